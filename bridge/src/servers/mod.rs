//! Capacity sources: polls each puppetserver's status API.
