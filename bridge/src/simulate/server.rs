//! A modelled puppetserver: a pool of JRubies, a FIFO borrow queue, and
//! the status its API would report.
//!
//! One JRuby serves one request at a time. A request that finds none free
//! waits in arrival order (puppetserver's borrow queue; its wait is
//! `average-wait-time`). Busy JRuby-time is integrated exactly and split
//! into minutes, so a minute's utilisation is busy JRuby-seconds ÷
//! (JRubies × 60 s), whatever the requests' lengths.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::schedule::ServerSample;

use super::stats::DecayingMean;

/// puppetserver samples the free count every 5 s.
const FREE_SAMPLE_MS: i64 = 5_000;

/// Which borrow of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Borrow {
    /// Node, catalog and file metadata: the compile.
    Compile,
    /// The report submission at the end of the run.
    Report,
}

/// A request waiting for a JRuby.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiting {
    pub host: u32,
    pub borrow: Borrow,
    pub arrived: i64,
    pub hold_ms: i64,
}

/// A borrow that got its JRuby: it is returned at `release_at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acquired {
    pub host: u32,
    pub borrow: Borrow,
    pub waited_ms: i64,
    pub release_at: i64,
}

/// One minute of one server.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerMinute {
    pub busy_ms: u64,
    pub up_ms: u64,
    pub borrows: u32,
    pub wait_sum_ms: u64,
    pub wait_max_ms: u32,
    pub runs_started: u32,
    pub full_started: u32,
    pub cached_started: u32,
    pub failed: u32,
    /// Most requests waiting at once.
    pub queued_max: u32,
}

pub struct Server {
    pub name: Arc<str>,
    pub pool: usize,
    pub jrubies: u32,
    pub up: bool,
    busy: u32,
    queue: VecDeque<Waiting>,
    borrow_mean: DecayingMean,
    wait_mean: DecayingMean,
    borrow_count: u64,
    /// `average-free-jrubies`: the free count sampled every 5 s into a
    /// decaying histogram (puppetserver's `schedule-metrics-sampler!`).
    free_mean: DecayingMean,
    next_free_sample: i64,
    /// Time up to which busy time and up time are accounted.
    accounted_to: i64,
    t0: i64,
    pub minutes: Vec<ServerMinute>,
}

impl Server {
    pub fn new(name: Arc<str>, pool: usize, jrubies: u32, t0: i64, n_minutes: usize) -> Server {
        Server {
            name,
            pool,
            jrubies,
            up: true,
            busy: 0,
            queue: VecDeque::new(),
            borrow_mean: DecayingMean::new(DecayingMean::PUPPETSERVER_ALPHA_PER_S),
            wait_mean: DecayingMean::new(DecayingMean::PUPPETSERVER_ALPHA_PER_S),
            borrow_count: 0,
            free_mean: DecayingMean::new(DecayingMean::PUPPETSERVER_ALPHA_PER_S),
            next_free_sample: t0 + FREE_SAMPLE_MS,
            accounted_to: t0,
            t0,
            minutes: vec![ServerMinute::default(); n_minutes],
        }
    }

    pub fn busy(&self) -> u32 {
        self.busy
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The minute of `now` (clamped to the recorded range).
    pub fn minute_ix(&self, now: i64) -> usize {
        (((now - self.t0).max(0) / 60_000) as usize).min(self.minutes.len().saturating_sub(1))
    }

    /// Integrates busy and up time from the last change to `now`, and
    /// takes the 5-second free-count samples in between (busy is constant
    /// there).
    pub fn account(&mut self, now: i64) {
        while self.next_free_sample < now {
            if self.up {
                let free = (self.jrubies - self.busy) as f64;
                self.free_mean.record(self.next_free_sample, free);
            }
            self.next_free_sample += FREE_SAMPLE_MS;
        }
        let mut from = self.accounted_to;
        while from < now {
            let minute = ((from - self.t0) / 60_000) as usize;
            if minute >= self.minutes.len() {
                break;
            }
            let minute_end = self.t0 + (minute as i64 + 1) * 60_000;
            let to = now.min(minute_end);
            let dt = (to - from) as u64;
            let m = &mut self.minutes[minute];
            m.busy_ms += dt * self.busy as u64;
            if self.up {
                m.up_ms += dt;
            }
            from = to;
        }
        self.accounted_to = self.accounted_to.max(now);
    }

    /// A request arrives. `Some` when it gets a JRuby at once.
    pub fn request(&mut self, now: i64, waiting: Waiting) -> Option<Acquired> {
        debug_assert!(self.up, "request to a server that is down");
        if self.busy < self.jrubies {
            Some(self.acquire(now, waiting))
        } else {
            self.queue.push_back(waiting);
            let minute = self.minute_ix(now);
            let m = &mut self.minutes[minute];
            m.queued_max = m.queued_max.max(self.queue.len() as u32);
            None
        }
    }

    fn acquire(&mut self, now: i64, waiting: Waiting) -> Acquired {
        self.account(now);
        self.busy += 1;
        self.borrow_count += 1;
        let waited_ms = now - waiting.arrived;
        self.wait_mean.record(now, waited_ms as f64);
        let minute = self.minute_ix(now);
        let m = &mut self.minutes[minute];
        m.borrows += 1;
        m.wait_sum_ms += waited_ms as u64;
        m.wait_max_ms = m.wait_max_ms.max(waited_ms as u32);
        Acquired {
            host: waiting.host,
            borrow: waiting.borrow,
            waited_ms,
            release_at: now + waiting.hold_ms,
        }
    }

    /// A borrow held for `held_ms` returns its JRuby; the first waiting
    /// request (if any) takes it.
    pub fn release(&mut self, now: i64, held_ms: i64) -> Option<Acquired> {
        self.account(now);
        debug_assert!(self.busy > 0, "release without a borrow");
        self.busy -= 1;
        self.borrow_mean.record(now, held_ms as f64);
        let next = self.queue.pop_front()?;
        Some(self.acquire(now, next))
    }

    /// The server stops: every borrow in flight and every waiting request
    /// is lost (their runs fail). Returns the waiting ones.
    pub fn go_down(&mut self, now: i64) -> Vec<Waiting> {
        self.account(now);
        self.up = false;
        self.busy = 0;
        self.queue.drain(..).collect()
    }

    /// The server is back, with a fresh pool and fresh metrics (a
    /// restarted JVM).
    pub fn come_up(&mut self, now: i64) {
        self.account(now);
        self.up = true;
        self.busy = 0;
        self.borrow_mean = DecayingMean::new(DecayingMean::PUPPETSERVER_ALPHA_PER_S);
        self.wait_mean = DecayingMean::new(DecayingMean::PUPPETSERVER_ALPHA_PER_S);
        self.borrow_count = 0;
        self.free_mean = DecayingMean::new(DecayingMean::PUPPETSERVER_ALPHA_PER_S);
    }

    /// What `/status/v1/services/jruby-metrics?level=debug` would say now
    /// (timer means in whole milliseconds, truncated, as puppetserver's).
    pub fn sample(&mut self, now: i64) -> ServerSample {
        self.account(now);
        ServerSample {
            jrubies: self.jrubies,
            free: self.jrubies - self.busy,
            queued: self.queue.len() as u32,
            avg_borrow_ms: self.borrow_mean.mean().trunc(),
            avg_wait_ms: self.wait_mean.mean().trunc(),
            borrow_count: self.borrow_count,
            pool_locked: false,
            avg_free: Some(self.free_mean.mean()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(jrubies: u32) -> Server {
        Server::new(Arc::from("puppet1"), 0, jrubies, 0, 10)
    }

    fn compile(host: u32, arrived: i64, hold_ms: i64) -> Waiting {
        Waiting {
            host,
            borrow: Borrow::Compile,
            arrived,
            hold_ms,
        }
    }

    #[test]
    fn the_second_of_two_overlapping_runs_waits_exactly_the_first_compile() {
        let mut s = server(1);
        let first = s.request(0, compile(1, 0, 1_500)).expect("free JRuby");
        assert_eq!((first.waited_ms, first.release_at), (0, 1_500));
        assert_eq!(s.request(400, compile(2, 400, 700)), None);
        assert_eq!(s.queued(), 1);
        let sample = s.sample(400);
        assert_eq!((sample.free, sample.queued), (0, 1));
        let second = s.release(1_500, 1_500).expect("the waiting request");
        assert_eq!(second.host, 2);
        assert_eq!(second.waited_ms, 1_100);
        assert_eq!(second.release_at, 2_200);
        assert_eq!(s.release(2_200, 700), None);
        let sample = s.sample(2_200);
        assert_eq!((sample.free, sample.queued, sample.borrow_count), (1, 0, 2));
        // (0·e^(−0.015·1.5) + 1100) / (e^(−0.015·1.5) + 1), truncated.
        assert_eq!(sample.avg_wait_ms, 556.0);
        assert!((sample.avg_borrow_ms - 1_100.0).abs() < 10.0);
    }

    #[test]
    fn waiting_requests_are_served_in_arrival_order() {
        let mut s = server(2);
        s.request(0, compile(1, 0, 1_000)).unwrap();
        s.request(0, compile(2, 0, 3_000)).unwrap();
        for host in 3..6 {
            assert_eq!(
                s.request(10 * host as i64, compile(host, 10 * host as i64, 500)),
                None
            );
        }
        let mut order = Vec::new();
        let mut next = s.release(1_000, 1_000);
        while let Some(acquired) = next {
            order.push(acquired.host);
            next = s.release(acquired.release_at, 500);
        }
        assert_eq!(order, vec![3, 4, 5]);
    }

    #[test]
    fn utilisation_is_split_exactly_into_minutes() {
        let mut s = server(2);
        // One JRuby busy from 30 s to 90 s: 30 s in minute 0, 30 s in minute 1.
        s.request(30_000, compile(1, 30_000, 60_000)).unwrap();
        s.release(90_000, 60_000);
        s.account(180_000);
        assert_eq!(s.minutes[0].busy_ms, 30_000);
        assert_eq!(s.minutes[1].busy_ms, 30_000);
        assert_eq!(s.minutes[2].busy_ms, 0);
        assert_eq!(s.minutes[2].up_ms, 60_000);
    }

    #[test]
    fn a_server_that_goes_down_loses_its_queue_and_stops_counting_busy_time() {
        let mut s = server(1);
        s.request(0, compile(1, 0, 100_000)).unwrap();
        s.request(1_000, compile(2, 1_000, 1_000));
        let lost = s.go_down(30_000);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].host, 2);
        s.account(60_000);
        assert_eq!(s.minutes[0].busy_ms, 30_000);
        assert_eq!(s.minutes[0].up_ms, 30_000);
        s.come_up(90_000);
        s.account(120_000);
        assert_eq!(s.minutes[1].up_ms, 30_000);
        assert_eq!(s.sample(120_000).free, 1);
    }

    #[test]
    fn average_free_is_the_five_second_samples_decayed() {
        let mut s = server(4);
        // Three of four busy for ten minutes, then all free.
        for host in 0..3 {
            s.request(0, compile(host, 0, 600_000)).unwrap();
        }
        let busy = s.sample(600_000).avg_free.unwrap();
        assert!((busy - 1.0).abs() < 1e-9, "{busy}");
        for _ in 0..3 {
            s.release(600_000, 600_000);
        }
        // Five minutes later the recent samples dominate (α = 0.015/s).
        let idle = s.sample(900_000).avg_free.unwrap();
        assert!(idle > 3.9 && idle < 4.0, "{idle}");
    }
}
