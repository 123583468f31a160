//! placeholder: puppet
