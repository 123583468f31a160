//! The `/host` answer: shell-quoted `KEY='value'` lines, or JSON.
