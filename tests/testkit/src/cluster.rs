//! A real PostgreSQL primary + streaming replica in a throwaway directory.
