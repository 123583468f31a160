//! The ENC service around the computation: single-flight, replica reads,
//! invalidation, the Foreman fallback.
