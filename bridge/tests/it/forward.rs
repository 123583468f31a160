//! Forwarding to Foreman: a recording stand-in that answers as Foreman does.
