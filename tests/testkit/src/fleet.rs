//! The fleet generator: clones the golden Foreman hosts into 10K/100K-host fleets.
