//! Statistics of the measurements: exact percentiles over millisecond
//! samples, the coefficient of variation, and the exponentially decaying
//! mean puppetserver reports as `average-borrow-time`.

use serde::Serialize;

/// Millisecond samples (u32: 49 days is plenty), kept whole so that
/// percentiles are exact.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<u32>,
}

/// A distribution in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dist {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Samples {
    pub fn push_ms(&mut self, ms: i64) {
        self.values.push(ms.clamp(0, u32::MAX as i64) as u32);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Count, mean, p50, p99 and max, in seconds; `None` without samples.
    pub fn dist(&mut self) -> Option<Dist> {
        if self.values.is_empty() {
            return None;
        }
        self.values.sort_unstable();
        let sum: u64 = self.values.iter().map(|&v| v as u64).sum();
        let n = self.values.len();
        Some(Dist {
            count: n as u64,
            mean: sum as f64 / n as f64 / 1000.0,
            p50: percentile_sorted(&self.values, 50.0) as f64 / 1000.0,
            p99: percentile_sorted(&self.values, 99.0) as f64 / 1000.0,
            max: self.values[n - 1] as f64 / 1000.0,
        })
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at
/// least `p`% of the values at or below it.
pub fn percentile_sorted(sorted: &[u32], p: f64) -> u32 {
    assert!(!sorted.is_empty(), "percentile of nothing");
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Mean and coefficient of variation (population standard deviation ÷
/// mean); `None` for no values or a zero mean.
pub fn mean_cv(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean == 0.0 {
        return None;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.sqrt() / mean))
}

/// The mean of an exponentially decaying reservoir as Dropwizard's
/// `Timer` gives it (puppetserver's `average-borrow-time` and
/// `average-wait-time` are that snapshot's mean): each observation weighs
/// `exp(alpha·t)`, alpha = 0.015/s, i.e. biased to the last ~5 minutes. The
/// reservoir's sampling noise is left out; an idle pool keeps its last mean.
#[derive(Debug, Clone)]
pub struct DecayingMean {
    alpha_per_ms: f64,
    weight: f64,
    weighted_sum: f64,
    at: i64,
}

impl DecayingMean {
    pub const PUPPETSERVER_ALPHA_PER_S: f64 = 0.015;

    pub fn new(alpha_per_s: f64) -> DecayingMean {
        DecayingMean {
            alpha_per_ms: alpha_per_s / 1000.0,
            weight: 0.0,
            weighted_sum: 0.0,
            at: 0,
        }
    }

    pub fn record(&mut self, now: i64, value: f64) {
        if self.weight > 0.0 {
            let keep = (-(now - self.at).max(0) as f64 * self.alpha_per_ms).exp();
            self.weight *= keep;
            self.weighted_sum *= keep;
        }
        self.at = now;
        self.weight += 1.0;
        self.weighted_sum += value;
    }

    /// 0 before any observation, as puppetserver answers.
    pub fn mean(&self) -> f64 {
        if self.weight > 0.0 {
            self.weighted_sum / self.weight
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile_sorted(&sorted, 50.0), 50);
        assert_eq!(percentile_sorted(&sorted, 99.0), 99);
        assert_eq!(percentile_sorted(&sorted, 100.0), 100);
        assert_eq!(percentile_sorted(&[7], 99.0), 7);
        let sorted = [10, 20, 30, 40];
        assert_eq!(percentile_sorted(&sorted, 50.0), 20);
        assert_eq!(percentile_sorted(&sorted, 51.0), 30);
    }

    #[test]
    fn dist_in_seconds() {
        let mut samples = Samples::default();
        for ms in [3000, 1000, 2000, 4000] {
            samples.push_ms(ms);
        }
        let dist = samples.dist().unwrap();
        assert_eq!(dist.count, 4);
        assert_eq!(dist.mean, 2.5);
        assert_eq!(dist.p50, 2.0);
        assert_eq!(dist.p99, 4.0);
        assert_eq!(dist.max, 4.0);
        assert!(Samples::default().dist().is_none());
    }

    #[test]
    fn coefficient_of_variation() {
        let (mean, cv) = mean_cv(&[10.0, 10.0, 10.0]).unwrap();
        assert_eq!((mean, cv), (10.0, 0.0));
        // mean 5, population sd 3 (values 2 and 8).
        let (mean, cv) = mean_cv(&[2.0, 8.0]).unwrap();
        assert_eq!(mean, 5.0);
        assert!((cv - 0.6).abs() < 1e-12);
        assert!(mean_cv(&[]).is_none());
        assert!(mean_cv(&[0.0, 0.0]).is_none());
    }

    #[test]
    fn decaying_mean_follows_recent_values() {
        let mut mean = DecayingMean::new(DecayingMean::PUPPETSERVER_ALPHA_PER_S);
        assert_eq!(mean.mean(), 0.0);
        for s in 0..600 {
            mean.record(s * 1000, 100.0);
        }
        assert!((mean.mean() - 100.0).abs() < 1e-9);
        // Ten minutes of 1000 ms borrows: the old 100 ms are forgotten.
        for s in 600..1200 {
            mean.record(s * 1000, 1000.0);
        }
        assert!(mean.mean() > 990.0, "{}", mean.mean());
        // Equal weight at equal times: one old and one new value average.
        let mut two = DecayingMean::new(0.015);
        two.record(0, 0.0);
        two.record(0, 10.0);
        assert_eq!(two.mean(), 5.0);
        // A later value weighs exp(0.015 * 100) = 4.48 times the older one.
        let mut later = DecayingMean::new(0.015);
        later.record(0, 0.0);
        later.record(100_000, 10.0);
        let w = (1.5f64).exp();
        assert!((later.mean() - 10.0 * w / (1.0 + w)).abs() < 1e-9);
    }
}
