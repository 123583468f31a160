//! Per puppetserver: the admissible rate of new runs.
//!
//! A JRuby is held only while the server answers a run's requests, so the
//! server's capacity is a *throughput*: `target × JRubies ÷ cost` runs per
//! second, where `cost` is the JRuby-seconds one run holds. The cost starts
//! at the configured guess and is then measured: busy JRuby-seconds seen in
//! the samples divided by the runs started on the server, over a decaying
//! window (the guess stays in as a prior worth a few runs, so a quiet server
//! keeps a sane estimate). Three corrections follow what the server says:
//! a slow integral on the utilisation error removes what the cost misses, a
//! proportional term on the busy share of the last seconds admits fewer runs
//! while long compiles hold JRubies, and a brake cuts the rate while
//! requests keep queueing for a JRuby.

use super::{ServerSample, Ts};

/// How long past measurements count (seconds): minutes, so one slow
/// compile does not swing the rate.
const COST_WINDOW: f64 = 300.0;
/// The configured cost counts as this many runs of evidence.
const PRIOR_RUNS: f64 = 20.0;
/// Smoothing of the measured utilisation (seconds).
const UTIL_WINDOW: f64 = 30.0;
/// Gain of the utilisation correction, per second per unit of error.
const CORRECTION_GAIN: f64 = 0.01;
/// Smoothing of the busy share that the proportional term follows (s).
const FAST_WINDOW: f64 = 6.0;
/// Proportional term: admit less while the server is busier than the
/// target right now (a run of long compiles), more while it is idler.
const PROPORTIONAL_GAIN: f64 = 3.0;
/// The integral aims this share of the target: compile times alone make a
/// server's per-minute utilisation vary by about 1.2 points around its
/// mean, and the target is a ceiling operators set, not a floor.
const SETPOINT: f64 = 0.99;

#[derive(Debug, Clone)]
pub struct Capacity {
    target: f64,
    prior_cost: f64,
    down_after: f64,
    /// Fed by a live source: no sample for `down_after` means down.
    monitored: bool,
    jrubies: u32,
    last_ok: Option<Ts>,
    last_sample: Option<(Ts, u32)>,
    busy_acc: f64,
    runs_acc: f64,
    acc_at: Option<Ts>,
    utilization: f64,
    /// Busy share now, smoothed over seconds.
    fast: f64,
    correction: f64,
    brake: f64,
    /// The last reading showed a queue.
    queueing: bool,
    pool_locked: bool,
}

impl Capacity {
    pub fn new(
        jrubies: u32,
        monitored: bool,
        target: f64,
        prior_cost: f64,
        down_after: f64,
    ) -> Self {
        Capacity {
            target,
            prior_cost: prior_cost.max(0.01),
            down_after,
            monitored,
            jrubies,
            last_ok: None,
            last_sample: None,
            busy_acc: 0.0,
            runs_acc: 0.0,
            acc_at: None,
            utilization: 0.0,
            fast: 0.0,
            correction: 1.0,
            brake: 1.0,
            queueing: false,
            pool_locked: false,
        }
    }

    /// Decays the accumulators to `now`.
    fn decay(&mut self, now: Ts) {
        if let Some(at) = self.acc_at {
            let dt = now.since(at).max(0.0);
            let keep = (-dt / COST_WINDOW).exp();
            self.busy_acc *= keep;
            self.runs_acc *= keep;
        }
        self.acc_at = Some(now);
    }

    /// A run was started on this server (by any bridge process).
    pub fn note_run(&mut self, now: Ts) {
        // Without samples there is no busy time to set against the runs.
        if self.last_sample.is_none() {
            return;
        }
        self.decay(now);
        self.runs_acc += 1.0;
    }

    pub fn observe(&mut self, sample: &ServerSample, now: Ts) {
        if sample.jrubies > 0 {
            self.jrubies = sample.jrubies;
        }
        let busy = sample.jrubies.saturating_sub(sample.free);
        if let Some((at, last_busy)) = self.last_sample {
            let dt = now.since(at);
            if dt > 0.0 && dt < 10.0 * self.down_after.max(1.0) {
                self.decay(now);
                // Trapezoid: busy JRubies between two samples.
                let busy_secs = 0.5 * f64::from(busy + last_busy) * dt;
                self.busy_acc += busy_secs;
                let mean_util = busy_secs / (dt * f64::from(self.jrubies.max(1)));
                let alpha = 1.0 - (-dt / UTIL_WINDOW).exp();
                self.utilization += alpha * (mean_util - self.utilization);
                let alpha = 1.0 - (-dt / FAST_WINDOW).exp();
                let now_util = f64::from(busy) / f64::from(self.jrubies.max(1));
                self.fast += alpha * (now_util - self.fast);
                // Integral correction, bounded so a wrong guess cannot run away.
                let error = SETPOINT * self.target - self.utilization;
                self.correction =
                    (self.correction * (CORRECTION_GAIN * error * dt).exp()).clamp(0.5, 1.5);
            }
        }
        // A queue for JRubies that persists means the rate is too high now,
        // whatever the averages say. At 80% of 24 JRubies a short queue comes
        // and goes by chance, so only a queue seen in two readings in a row
        // brakes, gently; the brake releases over about a minute.
        let queue_limit = (f64::from(self.jrubies) * 0.25).max(2.0);
        let queueing = f64::from(sample.queued) >= queue_limit;
        if queueing && self.queueing {
            self.brake = (self.brake * 0.9).max(0.2);
        } else if !queueing {
            self.brake = (self.brake * 1.02).min(1.0);
        }
        self.queueing = queueing;
        self.pool_locked = sample.pool_locked;
        self.last_sample = Some((now, busy));
        self.last_ok = Some(now);
    }

    /// The source failed; the server goes down once `down_after` passes.
    pub fn observe_failure(&mut self, _now: Ts) {
        self.last_sample = None;
    }

    /// Takes runs: monitored servers need a recent good sample.
    pub fn is_up(&self, now: Ts) -> bool {
        if !self.monitored {
            return true;
        }
        match self.last_ok {
            Some(at) => now.since(at) <= self.down_after && self.last_sample.is_some(),
            None => false,
        }
    }

    pub fn pool_locked(&self) -> bool {
        self.pool_locked
    }

    /// JRuby-seconds per run: the measurement blended with the prior.
    pub fn cost(&self) -> f64 {
        (self.busy_acc + PRIOR_RUNS * self.prior_cost) / (self.runs_acc + PRIOR_RUNS)
    }

    pub fn utilization(&self) -> f64 {
        self.utilization
    }

    pub fn jrubies(&self) -> u32 {
        self.jrubies
    }

    /// Admissible new runs per second now (0 when down or flushing).
    pub fn rate(&self, now: Ts) -> f64 {
        if !self.is_up(now) || self.pool_locked {
            return 0.0;
        }
        let base = self.target * f64::from(self.jrubies) / self.cost();
        let proportional = if self.last_sample.is_some() {
            (1.0 + PROPORTIONAL_GAIN * (self.target - self.fast) / self.target).clamp(0.5, 1.5)
        } else {
            1.0
        };
        base * self.correction * self.brake * proportional
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(jrubies: u32, free: u32, queued: u32) -> ServerSample {
        ServerSample {
            jrubies,
            free,
            queued,
            ..ServerSample::default()
        }
    }

    #[test]
    fn static_server_uses_the_prior() {
        let c = Capacity::new(24, false, 0.8, 2.0, 10.0);
        assert!(c.is_up(Ts(0)));
        assert!((c.rate(Ts(0)) - 0.8 * 24.0 / 2.0).abs() < 1e-9);
    }

    #[test]
    fn monitored_server_is_down_until_sampled_and_after_silence() {
        let mut c = Capacity::new(24, true, 0.8, 2.0, 10.0);
        assert!(!c.is_up(Ts(0)));
        assert_eq!(c.rate(Ts(0)), 0.0);
        c.observe(&sample(24, 24, 0), Ts(1000));
        assert!(c.is_up(Ts(5000)));
        assert!(!c.is_up(Ts(12_000)));
        c.observe(&sample(24, 24, 0), Ts(12_000));
        c.observe_failure(Ts(13_000));
        assert!(!c.is_up(Ts(13_000)), "a failed read takes it out at once");
    }

    #[test]
    fn measured_cost_replaces_the_guess() {
        // 10 JRubies always half busy, 2.5 runs started per second: each
        // run holds 5 / 2.5 = 2 JRuby-seconds, though the guess said 0.5.
        let mut c = Capacity::new(10, true, 0.8, 0.5, 10.0);
        for i in 0..3000 {
            let now = Ts(i * 1000);
            c.observe(&sample(10, 5, 0), now);
            for _ in 0..2 {
                c.note_run(now);
            }
            if i % 2 == 0 {
                c.note_run(now);
            }
        }
        assert!((c.cost() - 2.0).abs() < 0.1, "cost {}", c.cost());
    }

    #[test]
    fn queueing_brakes_and_recovers() {
        let mut c = Capacity::new(10, true, 0.8, 1.0, 10.0);
        c.observe(&sample(10, 10, 0), Ts(0));
        let before = c.rate(Ts(0));
        // One reading with a queue is chance; a queue that stays brakes.
        c.observe(&sample(10, 0, 5), Ts(1000));
        assert_eq!(c.brake, 1.0);
        for i in 2..6 {
            c.observe(&sample(10, 0, 5), Ts(i * 1000));
        }
        assert!(c.rate(Ts(5000)) < before * 0.7);
        for i in 6..200 {
            c.observe(&sample(10, 2, 0), Ts(i * 1000));
        }
        assert!(c.brake > 0.99);
    }

    #[test]
    fn flush_pauses_without_going_down() {
        let mut c = Capacity::new(4, true, 0.8, 1.0, 10.0);
        let locked = ServerSample {
            pool_locked: true,
            ..sample(4, 0, 0)
        };
        c.observe(&locked, Ts(0));
        assert!(c.is_up(Ts(0)));
        assert_eq!(c.rate(Ts(0)), 0.0);
        c.observe(&sample(4, 4, 0), Ts(1000));
        assert!(c.rate(Ts(1000)) > 0.0);
    }
}
