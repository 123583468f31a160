//! Capacity sources against a stand-in serving real puppetserver status JSON.
