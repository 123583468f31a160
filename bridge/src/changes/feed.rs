//! Following `pvc.changes`: every `changes.poll_ms`, one statement on the
//! replica with the newest replay position (else the primary) returns the
//! new rows and the snapshot they were read under; `cursor` says which rows
//! are new, `tables` what they affect, and the ENC cache drops exactly that
//! (`EncService::changed`), gated at the reading server's position. A
//! reinstalled feed (new epoch), rows pruned before this bridge read them,
//! or a cursor that cannot keep up flush everything: safe, only slower.
//! Any bridge also prunes rows older than `changes.keep_secs` on the primary.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cursor::Cursor;
use super::tables::{self, Affects};
use crate::cache::EncService;
use crate::config::ChangesConfig;
use crate::runs::RunService;
use crate::store::health::format_lsn;
use crate::store::pvc::changes::{self as sql, FeedRead};
use crate::store::Db;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Rows acted on.
    pub rows: AtomicU64,
    /// Rows logged because a watched column is missing (a renamed column).
    pub drift_rows: AtomicU64,
    /// Everything flushed, by cause.
    pub flushes_global: AtomicU64,
    pub flushes_reset: AtomicU64,
    pub read_errors: AtomicU64,
    /// Last id acted on or passed; open gaps.
    pub position: AtomicI64,
    pub open_gaps: AtomicU64,
    /// Milliseconds since the Unix epoch of the last good read (0: none).
    pub last_read_ms: AtomicU64,
    pub pruned_rows: AtomicU64,
}

pub struct ChangeFeed {
    db: Arc<Db>,
    enc: Arc<EncService>,
    runs: Option<Arc<RunService>>,
    config: ChangesConfig,
    pub stats: FeedStats,
}

/// Why everything was flushed.
#[derive(Debug, Clone, Copy)]
enum Flush {
    /// A change that affects everything (settings, global parameters).
    Global,
    /// The feed was reinstalled, pruned past this reader, or the reader
    /// lost track.
    Reset(&'static str),
}

impl ChangeFeed {
    pub fn new(
        db: Arc<Db>,
        enc: Arc<EncService>,
        runs: Option<Arc<RunService>>,
        config: ChangesConfig,
    ) -> Arc<ChangeFeed> {
        Arc::new(ChangeFeed {
            db,
            enc,
            runs,
            config,
            stats: FeedStats::default(),
        })
    }

    /// Starts following (unless `changes.enabled` is off) and pruning
    /// (always: the triggers keep logging until `migrate --uninstall`) on the
    /// current tokio runtime.
    pub fn spawn(self: &Arc<Self>) {
        if self.config.enabled {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.follow().await });
        }
        let this = Arc::clone(self);
        tokio::spawn(async move { this.prune_loop().await });
    }

    async fn follow(&self) {
        let poll = Duration::from_millis(self.config.poll_ms);
        let mut state: Option<(i64, Cursor)> = None;
        let mut failing = false;
        loop {
            match self.step(&mut state).await {
                Ok(more) => {
                    if failing {
                        tracing::info!("change feed readable again");
                        failing = false;
                    }
                    if more {
                        continue;
                    }
                }
                Err(error) => {
                    self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(error = %format!("{error:#}"), "cannot read the change feed; cached entries only expire until it is back");
                        failing = true;
                    }
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// One read; `true` when a full batch came back (read again at once).
    async fn step(&self, state: &mut Option<(i64, Cursor)>) -> anyhow::Result<bool> {
        let (client, replica) = self.db.read_freshest().await?;
        let after = state.as_ref().map_or(i64::MAX, |(_, c)| c.read_after());
        let read = sql::read_feed(&client, after, self.config.batch).await?;
        drop(client);
        if let Some(i) = replica {
            self.db.observe_replay(i, read.position);
        }
        self.stats.last_read_ms.store(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            Ordering::Relaxed,
        );
        let Some((epoch, cursor)) = state.as_mut() else {
            // First read: where the feed is. Nothing is cached yet.
            tracing::info!(
                position = read.newest,
                at = %format_lsn(read.position),
                "following the change feed"
            );
            *state = Some((
                read.epoch,
                Cursor::starting(read.newest, self.start_window(&read)),
            ));
            return Ok(true);
        };
        if read.epoch != *epoch {
            self.flush(Flush::Reset("the change feed was reinstalled"), &read);
            *state = Some((
                read.epoch,
                Cursor::starting(read.newest, self.start_window(&read)),
            ));
            return Ok(true);
        }
        if read.pruned_upto > cursor.read_after() {
            self.flush(
                Flush::Reset("rows were pruned before this bridge read them"),
                &read,
            );
            cursor.restart(read.newest, self.start_window(&read));
            return Ok(true);
        }
        let ids: Vec<i64> = read.rows.iter().map(|r| r.id).collect();
        let complete = (read.rows.len() as i64) < self.config.batch;
        let step = cursor.observe(&ids, read.snapshot, complete);
        if step.overflow {
            self.flush(
                Flush::Reset("too many rows in flight in the change feed"),
                &read,
            );
            cursor.restart(read.newest, self.start_window(&read));
            return Ok(true);
        }
        self.stats
            .position
            .store(cursor.read_after(), Ordering::Relaxed);
        self.stats
            .open_gaps
            .store(cursor.open_gaps() as u64, Ordering::Relaxed);
        if !step.fresh.is_empty() {
            self.apply(&read, &step.fresh);
        }
        Ok(!complete)
    }

    /// Rows to read again at a start: never below what was pruned (those
    /// are gone, not missing).
    fn start_window(&self, read: &FeedRead) -> i64 {
        self.config
            .start_window
            .min(read.newest.saturating_sub(read.pruned_upto))
            .max(0)
    }

    /// Acts on the rows `fresh` of `read`.
    fn apply(&self, read: &FeedRead, fresh: &[i64]) {
        let fresh: BTreeSet<i64> = fresh.iter().copied().collect();
        let mut deps = Vec::new();
        let mut everything = false;
        let mut directory = tables::DirectoryEffect::default();
        for row in read.rows.iter().filter(|r| fresh.contains(&r.id)) {
            self.stats.rows.fetch_add(1, Ordering::Relaxed);
            if row.drift && self.stats.drift_rows.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(table = %row.table, "a column the bridge reads is missing from a Foreman table (renamed by an upgrade?): every change of that table is logged; upgrade the bridge and run `pvc-bridge migrate`");
            }
            directory.add(&row.table, &row.keys);
            match tables::affects(&row.table, &row.keys) {
                Affects::All => everything = true,
                Affects::Some(more) => deps.extend(more),
            }
        }
        if everything {
            self.flush(Flush::Global, read);
            return;
        }
        deps.sort();
        deps.dedup();
        tracing::debug!(rows = fresh.len(), deps = deps.len(), at = %format_lsn(read.position), "change feed: dropping affected entries");
        self.enc.changed(&Affects::Some(deps), read.position);
        if let Some(runs) = &self.runs {
            if directory.rebuild {
                runs.directory_changed(read.position);
            } else if !directory.is_empty() {
                runs.hosts_changed(directory.host_ids, directory.host_names, read.position);
            }
        }
    }

    fn flush(&self, why: Flush, read: &FeedRead) {
        match why {
            Flush::Global => {
                self.stats.flushes_global.fetch_add(1, Ordering::Relaxed);
                tracing::info!(at = %format_lsn(read.position), "change feed: a global change, every cached ENC is loaded again");
            }
            Flush::Reset(reason) => {
                self.stats.flushes_reset.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(reason, at = %format_lsn(read.position), "change feed: flushing every cached entry");
            }
        }
        self.enc.changed(&Affects::All, read.position);
        if let Some(runs) = &self.runs {
            runs.directory_changed(read.position);
        }
    }

    async fn prune_loop(&self) {
        let every = Duration::from_secs(self.config.prune_every_secs);
        let keep = Duration::from_secs(self.config.keep_secs);
        let mut last_gates = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            if last_gates.elapsed() >= Duration::from_secs(60) {
                self.enc.prune_gates();
                last_gates = Instant::now();
            }
            let result = async {
                let client = self.db.write().await?;
                Ok::<_, anyhow::Error>(sql::prune(&client, keep).await?)
            }
            .await;
            match result {
                Ok(0) => {}
                Ok(n) => {
                    self.stats
                        .pruned_rows
                        .fetch_add(n as u64, Ordering::Relaxed);
                    tracing::debug!(rows = n, "change feed pruned");
                }
                // The primary is down: the next round prunes.
                Err(error) => {
                    tracing::debug!(error = %format!("{error:#}"), "pruning the change feed failed")
                }
            }
        }
    }
}
