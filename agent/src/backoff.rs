//! Retry delays and rate limits, pure (the caller brings the clock and the
//! random numbers):
//! - [`Backoff`]: exponential delays with jitter while the bridge is
//!   unreachable or failing;
//! - [`fallback_offset`] / [`fallback_delay`]: when a node gives up waiting
//!   for a decision and runs Puppet on its own, spread by its certname so a
//!   fleet-wide bridge outage does not make every node fall back at once;
//! - [`ForcedRunLimit`]: a token bucket for file-change runs (a loop of
//!   changes must not become a loop of runs);
//! - [`Jitter`]: a small random source for the jitter itself.

use std::time::{Duration, Instant};

/// Exponential backoff: `base`, doubling up to `max`, each delay spread by
/// ±25% so nodes that failed together do not retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

/// The spread of a backoff delay around its nominal value.
const BACKOFF_SPREAD: f64 = 0.25;

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// The delay before the next attempt after one more failure. `jitter`
    /// is a uniform sample in [0, 1) (see [`Jitter::sample`]); the delay is
    /// the nominal one ±25%, never above `max`.
    pub fn next(&mut self, jitter: f64) -> Duration {
        let doublings = self.failures.min(32);
        self.failures = self.failures.saturating_add(1);
        let nominal = self
            .base
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        spread(nominal, BACKOFF_SPREAD, jitter).min(self.max)
    }

    /// A success: the next failure starts again at `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// `nominal` ± `fraction`, placed by `jitter` in [0, 1).
pub fn spread(nominal: Duration, fraction: f64, jitter: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 1.0 - fraction + 2.0 * fraction * jitter;
    nominal.mul_f64(factor.max(0.0))
}

/// A deterministic offset in [0, `interval`) from the certname: FNV-1a, then
/// a 64-bit finaliser (FNV alone leaves similar names — `web01`, `web02` —
/// close together in the high bits).
pub fn fallback_offset(certname: &str, interval: Duration) -> Duration {
    let hash = finalise(fnv1a(certname.as_bytes()));
    let nanos = interval.as_nanos().min(u128::from(u64::MAX));
    // (hash / 2^64) × interval, in integers: always < interval.
    let offset = (u128::from(hash) * nanos) >> 64;
    Duration::from_nanos(offset as u64)
}

/// How long after its last decision a node runs Puppet on its own: the
/// whole `fallback_interval`, then its certname's offset within the next
/// half interval. Nodes that lost the bridge together (their last
/// decisions are within one check interval of each other) fall back spread
/// over half an interval; after that each keeps its phase, running every
/// `fallback_interval` from its first fallback run.
pub fn fallback_delay(certname: &str, fallback_interval: Duration) -> Duration {
    fallback_interval + fallback_offset(certname, fallback_interval / 2)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// MurmurHash3's fmix64: every input bit affects every output bit.
fn finalise(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Forced (file-change) runs allowed: `burst` at once, refilled at
/// `per_hour`. The clock is the caller's.
#[derive(Debug, Clone)]
pub struct ForcedRunLimit {
    per_hour: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl ForcedRunLimit {
    /// A full bucket at `now`.
    pub fn new(per_hour: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        ForcedRunLimit {
            per_hour: f64::from(per_hour),
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let hours = now.duration_since(self.at).as_secs_f64() / 3600.0;
            self.tokens = (self.tokens + hours * self.per_hour).min(self.burst);
            self.at = now;
        }
    }

    /// Takes one run if allowed at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next run will be allowed (`now` if one is).
    pub fn next_allowed(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        if self.tokens >= 1.0 {
            Some(now)
        } else if self.per_hour > 0.0 {
            let hours = (1.0 - self.tokens) / self.per_hour;
            Some(now + Duration::from_secs_f64(hours * 3600.0))
        } else {
            None
        }
    }
}

/// A small random source for jitter (splitmix64): no cryptographic
/// quality needed, only that nodes and attempts differ.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn from_seed(seed: u64) -> Self {
        Jitter { state: seed }
    }

    /// Seeded from the clock and the process id: different on every node
    /// and every start.
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter::from_seed(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// Uniform in [0, 1).
    pub fn sample(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(S(5), S(300));
        // Middle jitter: the nominal delays.
        let nominal: Vec<Duration> = (0..9).map(|_| b.next(0.5)).collect();
        assert_eq!(
            nominal,
            [5, 10, 20, 40, 80, 160, 300, 300, 300].map(S).to_vec()
        );
        b.reset();
        assert_eq!(b.next(0.0), Duration::from_millis(3750), "-25%");
        assert_eq!(b.next(0.999_999_9).as_millis(), 12_499, "just under +25%");
        for _ in 0..100 {
            assert!(b.next(1.0) <= S(300), "never above the cap");
        }
        assert_eq!(b.failures(), 102);
        // Non-finite jitter falls back to the nominal delay.
        b.reset();
        assert_eq!(b.next(f64::NAN), S(5));
    }

    #[test]
    fn fallback_offsets_are_deterministic_within_the_interval() {
        let interval = S(1800);
        let a = fallback_offset("web01.example.com", interval);
        assert_eq!(a, fallback_offset("web01.example.com", interval));
        assert_ne!(a, fallback_offset("web02.example.com", interval));
        assert!(a < interval);
        assert_eq!(fallback_offset("x", Duration::ZERO), Duration::ZERO);
        assert_eq!(
            fallback_delay("web01.example.com", interval),
            interval + fallback_offset("web01.example.com", S(900))
        );
    }

    #[test]
    fn ten_thousand_certnames_spread_roughly_uniformly() {
        let interval = S(3600);
        let mut buckets = [0u32; 20];
        for i in 0..10_000 {
            // Sequential names, the hard case for a weak hash.
            let offset = fallback_offset(&format!("node{i:05}.dc1.example.com"), interval);
            assert!(offset < interval);
            buckets[(offset.as_secs_f64() / 180.0) as usize] += 1;
        }
        // 500 expected per bucket; a uniform spread stays well within ±20%
        // (the standard deviation is about 22).
        for (i, n) in buckets.iter().enumerate() {
            assert!((400..=600).contains(n), "bucket {i}: {n} of {buckets:?}");
        }
        let chi2: f64 = buckets
            .iter()
            .map(|&n| (f64::from(n) - 500.0).powi(2) / 500.0)
            .sum();
        // 19 degrees of freedom: p = 0.001 at 43.8.
        assert!(chi2 < 43.8, "chi² {chi2}: {buckets:?}");
    }

    #[test]
    fn forced_runs_burst_then_refill_per_hour() {
        let t0 = Instant::now();
        let mut limit = ForcedRunLimit::new(6, 3, t0);
        assert!(limit.try_take(t0));
        assert!(limit.try_take(t0));
        assert!(limit.try_take(t0));
        assert!(!limit.try_take(t0), "the burst is spent");
        assert_eq!(limit.next_allowed(t0), Some(t0 + S(600)));
        assert!(!limit.try_take(t0 + S(599)));
        assert!(limit.try_take(t0 + S(601)), "one per 10 minutes");
        assert!(!limit.try_take(t0 + S(602)));
        // Never more than the burst, however long it was idle.
        let later = t0 + S(100 * 3600);
        assert_eq!(
            (0..5).filter(|_| limit.try_take(later)).count(),
            3,
            "refilled to the burst only"
        );
        let mut never = ForcedRunLimit::new(0, 1, t0);
        assert!(never.try_take(t0));
        assert_eq!(never.next_allowed(t0 + S(3600)), None);
    }

    #[test]
    fn jitter_is_uniform_enough_and_seeded() {
        let mut j = Jitter::from_seed(42);
        let samples: Vec<f64> = (0..10_000).map(|_| j.sample()).collect();
        assert!(samples.iter().all(|s| (0.0..1.0).contains(s)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.48..0.52).contains(&mean), "mean {mean}");
        let mut again = Jitter::from_seed(42);
        assert_eq!(again.sample(), samples[0]);
        assert_eq!(spread(S(100), 0.1, 0.0), S(90));
        assert_eq!(spread(S(100), 0.1, 0.5), S(100));
    }
}
