//! placeholder: daemon
