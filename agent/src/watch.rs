//! placeholder: watch
