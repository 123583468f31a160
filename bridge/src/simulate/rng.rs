//! A small deterministic PRNG (xoshiro256**, seeded through splitmix64) and
//! the few distributions the model needs. Own code rather than the `rand`
//! crates: the simulation's results must not change when a dependency
//! changes its algorithms, and this is all it needs.

/// splitmix64: expands one seed into well-mixed words (also a fine hash).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman and Vigna).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for one purpose (`stream`) of one seed: streams are
    /// independent, so adding draws to one leaves the others unchanged.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut state = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let s = [
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ];
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (n > 0), without modulo bias worth noting
    /// at these sizes (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Exponential with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.uniform()).ln()
    }

    /// Standard normal (Box–Muller; one of the pair is dropped: simpler,
    /// and the cost is irrelevant here).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Lognormal with the given *mean* and log-space standard deviation:
    /// `mu = ln(mean) − sigma²/2` keeps the mean where the model wants it.
    pub fn lognormal(&mut self, mean: f64, sigma: f64) -> f64 {
        let mu = mean.ln() - sigma * sigma / 2.0;
        (mu + sigma * self.normal()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_same_numbers() {
        let mut a = Rng::new(7, 1);
        let mut b = Rng::new(7, 1);
        let mut c = Rng::new(7, 2);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn lognormal_has_the_asked_mean_and_a_long_tail() {
        let mut rng = Rng::new(1, 0);
        let n = 200_000;
        let mut draws: Vec<f64> = (0..n).map(|_| rng.lognormal(1.2, 0.6)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        assert!((mean - 1.2).abs() < 0.02, "mean {mean}");
        draws.sort_by(f64::total_cmp);
        let median = draws[n / 2];
        let p99 = draws[n * 99 / 100];
        // exp(mu) and exp(mu + 2.326 sigma) for mean 1.2, sigma 0.6.
        assert!((median - 1.003).abs() < 0.02, "median {median}");
        assert!((p99 - 4.06).abs() < 0.15, "p99 {p99}");
    }

    #[test]
    fn uniform_and_below_stay_in_range() {
        let mut rng = Rng::new(3, 3);
        for _ in 0..10_000 {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.below(30) < 30);
        }
    }
}
