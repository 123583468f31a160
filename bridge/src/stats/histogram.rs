//! A latency histogram with fixed buckets, updated lock-free: one atomic add
//! for the bucket and one for the sum per observation, so it can sit on
//! every request. Rendered in the Prometheus text format (cumulative
//! `_bucket{le=…}`, `_sum`, `_count`). Pure: no clock, no I/O; callers
//! measure the duration.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the finite buckets, in seconds as labelled. From 100 µs
/// (a cached ENC answer) to 10 s (an upload waiting on a slow database);
/// anything slower lands in `+Inf`.
pub const BOUNDS: [&str; 16] = [
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1", "2.5", "5", "10",
];

/// [`BOUNDS`] in nanoseconds, the unit observations are compared in.
const BOUNDS_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Finite buckets plus `+Inf`.
const BUCKETS: usize = BOUNDS.len() + 1;

/// Counts per bucket (not cumulative: one add per observation) and the sum
/// of all observations in nanoseconds (overflows after ~584 years of
/// summed latency).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

/// A copy of a [`Histogram`], with cumulative buckets as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Observations at or below each of [`BOUNDS`], then `+Inf` (= count).
    pub cumulative: [u64; BUCKETS],
    pub sum_seconds: f64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.cumulative[BUCKETS - 1]
    }
}

/// The bucket an observation of `nanos` falls in: the first bound it does
/// not exceed (Prometheus buckets are `le`, upper bound included).
pub fn bucket_index(nanos: u64) -> usize {
    BOUNDS_NANOS
        .iter()
        .position(|&bound| nanos <= bound)
        .unwrap_or(BUCKETS - 1)
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_index(nanos)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// True once anything was observed.
    pub fn is_used(&self) -> bool {
        self.buckets.iter().any(|b| b.load(Ordering::Relaxed) > 0)
    }

    /// The counts as of now. Observations running concurrently may show in
    /// the buckets and not yet in the sum (or the reverse); the count is
    /// the `+Inf` bucket, so buckets and count always agree.
    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = [0u64; BUCKETS];
        let mut running = 0u64;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        Snapshot {
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Writes the sample lines of one series of histogram `name` (no `# HELP`
/// or `# TYPE`: the caller writes those once per name). `labels` is the
/// series' label pairs without braces, already escaped (`a="x",b="y"`),
/// or empty.
pub fn write_series(out: &mut String, name: &str, labels: &str, snapshot: &Snapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in BOUNDS
        .iter()
        .copied()
        .chain(std::iter::once("+Inf"))
        .zip(snapshot.cumulative)
    {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
    }
    let braced = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braced} {}", snapshot.sum_seconds);
    let _ = writeln!(out, "{name}_count{braced} {}", snapshot.count());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_seconds_and_nanoseconds_agree() {
        for (label, nanos) in BOUNDS.iter().zip(BOUNDS_NANOS) {
            let seconds: f64 = label.parse().expect("a number");
            assert_eq!((seconds * 1e9).round() as u64, nanos, "{label}");
        }
        assert!(BOUNDS_NANOS.windows(2).all(|w| w[0] < w[1]), "ascending");
    }

    #[test]
    fn an_observation_on_a_bound_counts_in_that_bucket() {
        // `le`: the bound itself belongs to the bucket.
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(100_000), 0);
        assert_eq!(bucket_index(100_001), 1);
        assert_eq!(bucket_index(1_000_000), 3);
        assert_eq!(bucket_index(1_000_001), 4);
        assert_eq!(bucket_index(10_000_000_000), 15);
        assert_eq!(bucket_index(10_000_000_001), 16);
        assert_eq!(bucket_index(u64::MAX), 16);
    }

    #[test]
    fn snapshot_is_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        assert!(!h.is_used());
        h.observe(Duration::from_micros(50)); // le 0.0001
        h.observe(Duration::from_micros(300)); // le 0.0005
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(30)); // +Inf
        assert!(h.is_used());
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        assert_eq!(&s.cumulative[..4], &[1, 1, 3, 3]);
        assert_eq!(s.cumulative[15], 3, "le 10 excludes the 30 s one");
        assert_eq!(s.cumulative[16], 4);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert!((s.sum_seconds - 30.00065).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn renders_every_bucket_then_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3)); // le 0.005
        let mut out = String::new();
        write_series(
            &mut out,
            "x_seconds",
            "route=\"node\",status=\"2xx\"",
            &h.snapshot(),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), BUCKETS + 2);
        assert_eq!(
            lines[0],
            "x_seconds_bucket{route=\"node\",status=\"2xx\",le=\"0.0001\"} 0"
        );
        assert_eq!(
            lines[4],
            "x_seconds_bucket{route=\"node\",status=\"2xx\",le=\"0.0025\"} 0"
        );
        assert_eq!(
            lines[5],
            "x_seconds_bucket{route=\"node\",status=\"2xx\",le=\"0.005\"} 1"
        );
        assert_eq!(
            lines[16],
            "x_seconds_bucket{route=\"node\",status=\"2xx\",le=\"+Inf\"} 1"
        );
        assert_eq!(
            lines[17],
            "x_seconds_sum{route=\"node\",status=\"2xx\"} 0.003"
        );
        assert_eq!(
            lines[18],
            "x_seconds_count{route=\"node\",status=\"2xx\"} 1"
        );
    }

    #[test]
    fn renders_without_labels() {
        let mut out = String::new();
        write_series(&mut out, "y", "", &Histogram::default().snapshot());
        assert!(out.starts_with("y_bucket{le=\"0.0001\"} 0\n"), "{out}");
        assert!(out.ends_with("y_sum 0\ny_count 0\n"), "{out}");
    }
}
