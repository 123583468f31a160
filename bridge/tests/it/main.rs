//! Integration tests for the bridge against a real PostgreSQL primary + replica.
