//! placeholder: backoff
