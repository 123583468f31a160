//! The forwarder: sends the outbox to Foreman. In the background only the
//! elected leader sends, at `forward.rate_per_sec` with at most
//! `forward.concurrency` requests in flight, so Foreman's load is flat and
//! configured whatever the fleet does; any process sends a host's facts at
//! once when Foreman must have them before the host's next ENC answer.
//! Every send claims its row first, so no item is sent by two processes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::policy::{backoff, Attempt, Bucket};
use crate::config::ForwardSettings;
use crate::foreman::ForemanClient;
use crate::leader::Leadership;
use crate::store::pvc::outbox::{self, ItemKind, OutboxItem, OutboxStats};
use crate::store::pvc::PvcError;
use crate::store::Db;

/// Items claimed per round at most.
const CLAIM_BATCH: usize = 200;
/// How often an idle leader looks for due items (a local upload wakes it
/// sooner).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// How often every process reads the outbox numbers for `/metrics`.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How long a synchronous forward waits for a free slot, and for another
/// sender's claim on the host's facts to end, before leaving the facts to
/// the background.
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// What a synchronous forward did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Foreman took the facts; its write is at or before this WAL position
    /// of the primary.
    Forwarded { lsn: String },
    /// Left to the background forwarder (the reason is logged and
    /// answered).
    Deferred { reason: String },
}

/// Forwards by kind, mode (`background`, `sync`) and outcome.
#[derive(Debug, Default)]
pub struct ForwardCounters(Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>);

impl ForwardCounters {
    fn add(&self, kind: &'static str, mode: &'static str, outcome: &'static str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((kind, mode, outcome)).or_default() += 1;
    }

    /// `(kind, mode, outcome, count)`, sorted.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(&(k, m, o), &n)| (k, m, o, n)).collect()
    }
}

/// What `/metrics` shows of forwarding.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardStatus {
    /// The outbox as last read (every few seconds), if it could be.
    pub outbox: Option<OutboxStats>,
    /// Whether this process is the forwarding leader.
    pub leader: bool,
}

pub struct Forwarder {
    db: Arc<Db>,
    foreman: Arc<ForemanClient>,
    settings: ForwardSettings,
    /// Names this process's claims (`claimed_by`).
    owner: String,
    sync_permits: Semaphore,
    wake: Notify,
    status: Mutex<ForwardStatus>,
    pub counters: ForwardCounters,
}

fn path(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Facts => "/api/v2/hosts/facts",
        ItemKind::Report(_) => "/api/v2/config_reports",
    }
}

/// A number in 0..1 that differs between items and attempts, for backoff
/// spread (no random generator needed).
fn jitter(item: &OutboxItem) -> f64 {
    let mut x = (item.id as u64) ^ ((item.attempts as u64) << 40) ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Forwarder {
    pub fn new(db: Arc<Db>, foreman: Arc<ForemanClient>, settings: ForwardSettings) -> Forwarder {
        let owner = format!(
            "{}:{}:{:x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "bridge".into()),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        );
        Forwarder {
            db,
            foreman,
            sync_permits: Semaphore::new(settings.sync_concurrency),
            settings,
            owner,
            wake: Notify::new(),
            status: Mutex::new(ForwardStatus::default()),
            counters: ForwardCounters::default(),
        }
    }

    pub fn settings(&self) -> &ForwardSettings {
        &self.settings
    }

    pub fn status(&self) -> ForwardStatus {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells a leading forwarder in this process that an item was queued.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Starts the background sender (sends only while `leadership` holds)
    /// and the outbox numbers for `/metrics`.
    pub fn start(self: &Arc<Self>, leadership: Leadership) {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.dispatch(leadership).await });
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(STATS_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                this.refresh_stats().await;
            }
        });
    }

    /// Reads the outbox numbers now.
    pub async fn refresh_stats(&self) {
        let stats = match self.db.write().await {
            Ok(client) => outbox::stats(&client).await.ok(),
            Err(_) => None,
        };
        self.status.lock().unwrap_or_else(|e| e.into_inner()).outbox = stats;
    }

    fn set_leader(&self, leader: bool) {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).leader = leader;
    }

    async fn dispatch(self: Arc<Self>, mut leadership: Leadership) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let start = tokio::time::Instant::now();
        let clock = move || start.elapsed().as_secs_f64();
        loop {
            self.set_leader(false);
            leadership.until_leader().await;
            self.set_leader(true);
            tracing::info!(
                rate_per_sec = self.settings.rate_per_sec,
                concurrency = self.settings.concurrency,
                "forwarding to Foreman"
            );
            let mut bucket = Bucket::new(self.settings.rate_per_sec, clock());
            while leadership.is_leader() {
                let tokens = bucket.available(clock());
                let free = slots.available_permits();
                let want = tokens.min(free).min(CLAIM_BATCH);
                if want == 0 {
                    let wait = if tokens == 0 {
                        Duration::from_secs_f64(bucket.wait(clock()).clamp(0.001, 1.0))
                    } else {
                        Duration::from_millis(5)
                    };
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let items = match self.claim(want as i32, None).await {
                    Ok(items) => items,
                    Err(error) => {
                        tracing::warn!(%error, "forwarder cannot read the outbox");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if items.is_empty() {
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = self.wake.notified() => {}
                        _ = leadership.changed() => {}
                    }
                    continue;
                }
                bucket.take(items.len(), clock());
                for item in items {
                    let permit = Arc::clone(&slots)
                        .acquire_owned()
                        .await
                        .expect("the slots semaphore is never closed");
                    let this = Arc::clone(&self);
                    tokio::spawn(async move {
                        this.send(&item, "background").await;
                        drop(permit);
                    });
                }
            }
            tracing::warn!("no longer the forwarding leader");
        }
    }

    async fn claim(&self, limit: i32, certname: Option<&str>) -> Result<Vec<OutboxItem>, PvcError> {
        let client = self
            .db
            .write()
            .await
            .map_err(|e| PvcError::Invalid(e.to_string()))?;
        let lease_ms = self.settings.claim.as_millis() as i64;
        outbox::claim(&client, &self.owner, lease_ms, limit, certname).await
    }

    /// Sends one claimed item and records the result; the outcome label.
    async fn send(&self, item: &OutboxItem, mode: &'static str) -> Attempt {
        let kind = item.kind.as_str();
        let body = match self.db.write().await {
            Ok(client) => outbox::payload(&client, item).await,
            Err(e) => Err(PvcError::Invalid(e.to_string())),
        };
        let attempt = match body {
            Ok(Some(body)) => self.foreman.post_json(path(item.kind), body).await,
            // The facts or the report are gone (a host deleted from pvc):
            // nothing left to send.
            Ok(None) => Attempt::Taken,
            Err(error) => {
                // The claim lapses and the item is sent later.
                tracing::warn!(host.certname = %item.certname, kind, %error, "cannot read an item to forward");
                self.counters.add(kind, mode, "db_error");
                return Attempt::Retry {
                    status: None,
                    error: error.to_string(),
                };
            }
        };
        let recorded = match self.db.write().await {
            Ok(client) => match &attempt {
                Attempt::Taken => outbox::done(&client, item).await.map(|_| ()),
                Attempt::Retry { status, error } => {
                    let delay = backoff(
                        item.attempts as u32,
                        self.settings.max_backoff,
                        jitter(item),
                    );
                    outbox::failed(
                        &client,
                        item,
                        *status,
                        error,
                        delay.as_millis() as i64,
                        false,
                    )
                    .await
                }
                Attempt::Refused { status, error } => {
                    let dead = item.attempts as u32 + 1 >= self.settings.max_attempts;
                    let delay = backoff(
                        item.attempts as u32,
                        self.settings.max_backoff,
                        jitter(item),
                    );
                    if dead {
                        tracing::error!(host.certname = %item.certname, kind, status, %error, attempts = item.attempts + 1, "Foreman keeps refusing an item; set aside until the host's next upload");
                    }
                    outbox::failed(
                        &client,
                        item,
                        Some(*status),
                        error,
                        delay.as_millis() as i64,
                        dead,
                    )
                    .await
                }
            },
            Err(e) => Err(PvcError::Invalid(e.to_string())),
        };
        match (&attempt, &recorded) {
            (_, Err(error)) => {
                // Foreman's answer is lost with the claim; the item is sent
                // again when the claim lapses (at least once, never dropped).
                tracing::warn!(host.certname = %item.certname, kind, %error, "cannot record a forward's result");
            }
            (Attempt::Taken, Ok(())) => {
                tracing::debug!(host.certname = %item.certname, kind, mode, "forwarded to Foreman")
            }
            (Attempt::Retry { error, .. }, Ok(())) => {
                tracing::debug!(host.certname = %item.certname, kind, mode, %error, "forward failed; retried later")
            }
            (Attempt::Refused { error, .. }, Ok(())) => {
                tracing::warn!(host.certname = %item.certname, kind, mode, %error, "Foreman refused a forwarded item")
            }
        }
        self.counters.add(kind, mode, attempt.outcome());
        attempt
    }

    /// Sends the host's queued facts now, for an upload whose answer must
    /// wait until Foreman has them. Bounded by `forward.sync_concurrency`;
    /// facts it cannot send at once stay queued for the background.
    pub async fn forward_now(&self, certname: &str) -> SyncOutcome {
        let deferred = |reason: &str| SyncOutcome::Deferred {
            reason: reason.to_owned(),
        };
        let Ok(Ok(_permit)) = tokio::time::timeout(SYNC_WAIT, self.sync_permits.acquire()).await
        else {
            self.counters.add("facts", "sync", "busy");
            return deferred("all synchronous forwarding slots busy");
        };
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        loop {
            match self.claim(1, Some(certname)).await {
                Ok(mut items) if !items.is_empty() => {
                    match self.send(&items.remove(0), "sync").await {
                        Attempt::Taken => break,
                        Attempt::Retry { error, .. } | Attempt::Refused { error, .. } => {
                            return SyncOutcome::Deferred { reason: error }
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    self.counters.add("facts", "sync", "db_error");
                    return deferred(&format!("outbox unavailable: {error}"));
                }
            }
            // Not claimable: another sender holds the row, or already sent
            // it — and a send deletes the row only when it carried the
            // latest facts, so then Foreman has these (or newer) ones.
            let pending = match self.db.write().await {
                Ok(client) => outbox::facts_pending(&client, certname).await,
                Err(e) => Err(PvcError::Invalid(e.to_string())),
            };
            match pending {
                Ok(false) => {
                    self.counters.add("facts", "sync", "sent_elsewhere");
                    break;
                }
                Ok(true) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(true) => {
                    self.counters.add("facts", "sync", "claimed_elsewhere");
                    return deferred("the host's facts are being sent by another sender");
                }
                Err(error) => {
                    self.counters.add("facts", "sync", "db_error");
                    return deferred(&format!("outbox unavailable: {error}"));
                }
            }
        }
        let lsn = match self.db.write().await {
            Ok(client) => outbox::current_lsn(&client).await,
            Err(e) => Err(PvcError::Invalid(e.to_string())),
        };
        match lsn {
            Ok(lsn) => SyncOutcome::Forwarded { lsn },
            Err(error) => deferred(&format!("forwarded; WAL position unknown: {error}")),
        }
    }

    /// Whether the host's facts must reach Foreman before its next ENC
    /// answer: Foreman does not know the host yet, or facts the ENC depends
    /// on changed since the host's previous upload. A host's first upload
    /// to the bridge (`first`) has no previous one to compare with: when
    /// Foreman knows the host it has had its facts before, and they go
    /// through the outbox (a bridge deployed in front of a running fleet
    /// must not send every host synchronously).
    pub async fn must_forward_now(
        &self,
        certname: &str,
        name: &str,
        first: bool,
        enc_changed: bool,
    ) -> Result<bool, PvcError> {
        if !self.settings.sync {
            return Ok(false);
        }
        if enc_changed && !first {
            return Ok(true);
        }
        let client = self
            .db
            .write()
            .await
            .map_err(|e| PvcError::Invalid(e.to_string()))?;
        Ok(!outbox::foreman_knows(&client, certname, name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_in_range_and_differs_between_items() {
        let item = |id, attempts| OutboxItem {
            id,
            kind: ItemKind::Facts,
            certname: "a.example.com".into(),
            version: 1,
            attempts,
            first_enqueued: crate::schedule::Ts(0),
        };
        let values: Vec<f64> = (0..100).map(|id| jitter(&item(id, 0))).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.3..0.7).contains(&mean), "{mean}");
        assert_ne!(jitter(&item(7, 0)), jitter(&item(7, 1)));
    }
}
