//! The bridge's own schema (`pvc`) on the primary: leases, reports.
