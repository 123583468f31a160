//! Per-host scheduling facts from Foreman and the `/host` answer.
