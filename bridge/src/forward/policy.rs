//! Pure rules of forwarding: what an answer of Foreman means for the item
//! (done, retry, set aside), how long to wait before the next attempt, and
//! the token bucket that keeps Foreman's load flat.

use std::time::Duration;

/// What became of one attempt to send an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Foreman took it (2xx).
    Taken,
    /// Foreman could not be reached, timed out, or answered 5xx/408/429:
    /// send again later.
    Retry { status: Option<u16>, error: String },
    /// Foreman answered the item itself is wrong (4xx): sending the same
    /// again is pointless unless something changes; after `max_attempts`
    /// such answers the item is set aside.
    Refused { status: u16, error: String },
}

impl Attempt {
    /// The meaning of an HTTP status Foreman answered.
    pub fn from_status(status: u16, body: &str) -> Attempt {
        let error = || format!("Foreman answered {status}: {}", excerpt(body));
        match status {
            200..=299 => Attempt::Taken,
            // A report Foreman already has (a resend after its answer was
            // lost): its uniqueness check on host and time refuses it.
            422 if body.contains("has already been taken") => Attempt::Taken,
            // Timeouts and throttling are Foreman being busy, not the item
            // being wrong; 401/403 are our credentials, fixed by an operator.
            401 | 403 | 408 | 429 => Attempt::Retry {
                status: Some(status),
                error: error(),
            },
            400..=499 => Attempt::Refused {
                status,
                error: error(),
            },
            _ => Attempt::Retry {
                status: Some(status),
                error: error(),
            },
        }
    }

    /// The label of `/metrics` for this outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Attempt::Taken => "taken",
            Attempt::Retry { status: None, .. } => "unreachable",
            Attempt::Retry { .. } => "retry",
            Attempt::Refused { .. } => "refused",
        }
    }
}

/// At most 300 characters of an answer body, on one line, for logs and the
/// outbox's `last_error`.
fn excerpt(body: &str) -> String {
    let line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    line.trim().to_owned()
}

/// Wait before attempt number `attempts + 1`: 2 s doubling, capped, with a
/// spread of ±25% taken from `jitter` (0..1) so items that failed together
/// do not come back together.
pub fn backoff(attempts: u32, max: Duration, jitter: f64) -> Duration {
    let base = 2f64.powi(attempts.min(30) as i32 + 1);
    let capped = base.min(max.as_secs_f64());
    let spread = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64((capped * spread).min(max.as_secs_f64()))
}

/// A token bucket on an explicit clock (seconds): `rate` per second, at
/// most `capacity` saved up. In any window of `t` seconds at most
/// `capacity + rate·t` tokens are taken.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: f64,
}

impl Bucket {
    /// Starts empty, so a restarted forwarder does not begin with a burst.
    pub fn new(rate: f64, now: f64) -> Bucket {
        Bucket {
            rate,
            // A tenth of a second's worth, at least one item.
            capacity: (rate * 0.1).max(1.0),
            tokens: 0.0,
            at: now,
        }
    }

    fn refill(&mut self, now: f64) {
        if now > self.at {
            self.tokens = (self.tokens + (now - self.at) * self.rate).min(self.capacity);
            self.at = now;
        }
    }

    /// Whole tokens available now.
    pub fn available(&mut self, now: f64) -> usize {
        self.refill(now);
        self.tokens.floor() as usize
    }

    /// Takes `n` tokens (callers take at most what `available` said).
    pub fn take(&mut self, n: usize, now: f64) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// Seconds until one whole token is available.
    pub fn wait(&mut self, now: f64) -> f64 {
        self.refill(now);
        ((1.0 - self.tokens) / self.rate).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foremans_answers_are_classified() {
        assert_eq!(Attempt::from_status(201, "{}"), Attempt::Taken);
        assert_eq!(
            Attempt::from_status(
                422,
                r#"{"error":{"full_messages":["Reported at has already been taken"]}}"#
            ),
            Attempt::Taken
        );
        assert!(matches!(
            Attempt::from_status(422, r#"{"message":"Host is pending for Build"}"#),
            Attempt::Refused { status: 422, .. }
        ));
        for busy in [408, 429, 500, 502, 503] {
            assert!(
                matches!(Attempt::from_status(busy, ""), Attempt::Retry { status: Some(s), .. } if s == busy),
                "{busy}"
            );
        }
        // Credentials are an operator's problem, never the item's.
        assert!(matches!(
            Attempt::from_status(401, "Unable to authenticate user"),
            Attempt::Retry { .. }
        ));
        let Attempt::Refused { error, .. } = Attempt::from_status(400, "bad\njson") else {
            panic!("400 is a refusal")
        };
        assert_eq!(error, "Foreman answered 400: bad json");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_spreads() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(0, max, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(3, max, 0.5), Duration::from_secs(16));
        assert_eq!(backoff(20, max, 0.5), max);
        assert_eq!(backoff(20, max, 1.0), max);
        assert_eq!(backoff(0, max, 0.0), Duration::from_millis(1500));
        assert_eq!(backoff(0, max, 1.0), Duration::from_millis(2500));
    }

    #[test]
    fn the_bucket_never_gives_more_than_capacity_plus_rate_times_time() {
        let rate = 50.0;
        let mut bucket = Bucket::new(rate, 0.0);
        assert_eq!(bucket.available(0.0), 0, "starts empty");
        let mut taken = 0usize;
        let mut now = 0.0;
        while now < 10.0 {
            let n = bucket.available(now);
            bucket.take(n, now);
            taken += n;
            now += 0.013;
        }
        assert!(taken as f64 <= 5.0 + rate * now, "{taken} in {now} s");
        assert!(
            taken as f64 >= rate * (now - 0.1) - 5.0,
            "{taken} in {now} s"
        );
        // Idle time saves up at most the capacity.
        let mut idle = Bucket::new(rate, 0.0);
        assert_eq!(idle.available(100.0), 5);
        assert!((idle.wait(100.0) - 0.0).abs() < 1e-9);
        idle.take(5, 100.0);
        assert!((idle.wait(100.0) - 0.02).abs() < 1e-9);
    }
}
