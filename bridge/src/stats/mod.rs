//! Statistics the bridge keeps about itself, for `/metrics` and the status
//! page.

pub mod histogram;
