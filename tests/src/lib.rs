//! Cross-component test crate; the suites live in `tests/` beside this file.
