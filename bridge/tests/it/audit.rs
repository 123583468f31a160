//! The git audit trail against the real primary and a real bare repository.
