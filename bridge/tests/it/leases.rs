//! Leases and reports in the `pvc` schema on a real primary.
