//! The ENC: Foreman rows in, the exact document Foreman + foreman_puppet
//! would answer out. Pure: no I/O, no clock.

pub use pvc_psych::{Map, Value};
