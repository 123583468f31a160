//! A certname's deterministic phase in [0, 1): where in the cycle it runs.
