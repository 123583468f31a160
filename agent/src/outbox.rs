//! placeholder: outbox
