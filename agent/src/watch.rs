//! Monitored files (`PVC_FILES_MONITORED`): inotify through `notify`, its
//! callback bridged into tokio by a bounded channel (the callback never
//! waits: when the channel is full, the loss is noted and every monitored
//! path counts as changed).
//!
//! - Outside our Puppet runs, `changed()` returns the changed monitored
//!   paths once a burst of events has settled.
//! - During our run, events are queued; afterwards each path is judged
//!   against when Puppet says it wrote it (`verdict`): Puppet's own
//!   restores are dropped, anything else is tampering.
//! - The watches follow the list and the file system (`plan`): a watched
//!   directory replaced or created, a failed watch (inotify's limit), are
//!   re-armed on the next event, `set_paths` call or retry tick. Nothing
//!   polls: with nothing failing, the agent sleeps until inotify speaks.
//!
//! A private directory under the temp directory serves as a barrier: a file
//! created there and seen back proves that every earlier event has been
//! delivered, so a run's last events are not mistaken for later ones.

mod plan;
mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use plan::{Mode, Plan};
use verdict::Verdict;

/// A burst is over once no event came for this long.
const QUIET: Duration = Duration::from_millis(200);
/// A burst is reported after this long even if events keep coming.
const BURST_MAX: Duration = Duration::from_secs(2);
/// How often watches that could not be set up are tried again.
const RETRY: Duration = Duration::from_secs(10);
/// Events between the notify thread and us; beyond this they are counted
/// as lost (and every monitored path as changed).
const CHANNEL: usize = 4096;
/// How long the barrier may take before events are taken as they are.
const BARRIER_WAIT: Duration = Duration::from_secs(1);
/// After a run, events for files Puppet wrote that still carry Puppet's
/// write time are the run's own, arriving late (only when the barrier could
/// not be used).
const LATE_EVENTS: Duration = Duration::from_secs(2);

/// Watches the monitored files and directories.
pub struct FileWatch {
    watcher: RecommendedWatcher,
    events: mpsc::Receiver<notify::Result<Event>>,
    overflowed: Arc<AtomicBool>,
    barrier: Option<Barrier>,
    /// The monitored paths, normalized.
    targets: Vec<PathBuf>,
    plan: Plan,
    armed: BTreeMap<PathBuf, Armed>,
    /// Directories that could not be watched, with the last error (logged
    /// when it changes).
    failing: BTreeMap<PathBuf, String>,
    /// Monitored paths not fully watched (missing parent, failed watch).
    degraded: BTreeSet<PathBuf>,
    next_retry: Option<Instant>,
    /// Changes outside our runs, not returned yet.
    pending: BTreeSet<PathBuf>,
    burst: Option<Burst>,
    /// During our run: each changed path, and whether the first event for
    /// it was its creation.
    run: Option<BTreeMap<PathBuf, bool>>,
    after_run: Option<AfterRun>,
}

/// A directory handed to inotify, and which directory it was (a directory
/// replaced under the same name needs a new watch).
#[derive(Debug, Clone, Copy)]
struct Armed {
    mode: Mode,
    id: (u64, u64),
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    first: Instant,
    last: Instant,
}

impl Burst {
    fn deadline(&self) -> Instant {
        (self.last + QUIET).min(self.first + BURST_MAX)
    }
}

#[derive(Debug)]
struct AfterRun {
    until: Instant,
    written: BTreeMap<PathBuf, SystemTime>,
}

/// The barrier directory, the names seen created there, and a counter for
/// fresh names.
struct Barrier {
    dir: PathBuf,
    seen: std::sync::mpsc::Receiver<PathBuf>,
    next: u64,
}

impl Drop for Barrier {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl FileWatch {
    pub fn new() -> anyhow::Result<FileWatch> {
        let (sender, events) = mpsc::channel(CHANNEL);
        let overflowed = Arc::new(AtomicBool::new(false));
        let (seen_sender, seen) = std::sync::mpsc::channel();
        let barrier_dir = make_barrier_dir();
        let handler = {
            let overflowed = overflowed.clone();
            let barrier_dir = barrier_dir.clone();
            move |result: notify::Result<Event>| {
                if let (Ok(event), Some(dir)) = (&result, &barrier_dir) {
                    if event.paths.iter().any(|p| p.starts_with(dir)) {
                        if event.kind.is_create() {
                            for path in &event.paths {
                                let _ = seen_sender.send(path.clone());
                            }
                        }
                        return;
                    }
                }
                if let Ok(event) = &result {
                    if !counts(&event.kind) && !event.need_rescan() {
                        return;
                    }
                }
                if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(result) {
                    overflowed.store(true, Ordering::Relaxed);
                }
            }
        };
        // Symlinks inside a watched tree are not followed: the tree is what
        // is monitored, and a link out of it (or a loop) must not multiply
        // the watches.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher =
            RecommendedWatcher::new(handler, config).context("cannot start inotify")?;
        let barrier = barrier_dir.and_then(|dir| {
            match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => Some(Barrier { dir, seen, next: 0 }),
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), "no event barrier: {e}");
                    let _ = fs::remove_dir_all(&dir);
                    None
                }
            }
        });
        Ok(FileWatch {
            watcher,
            events,
            overflowed,
            barrier,
            targets: Vec::new(),
            plan: Plan::default(),
            armed: BTreeMap::new(),
            failing: BTreeMap::new(),
            degraded: BTreeSet::new(),
            next_retry: None,
            pending: BTreeSet::new(),
            burst: None,
            run: None,
            after_run: None,
        })
    }

    /// Watch exactly these (files or directories); re-armed when the list changes.
    pub fn set_paths(&mut self, paths: &[PathBuf]) {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let targets = plan::normalize(paths, &cwd);
        if targets == self.targets && self.degraded.is_empty() && self.failing.is_empty() {
            return;
        }
        if targets != self.targets {
            tracing::info!(
                "monitoring {} path(s): {}",
                targets.len(),
                targets
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            self.pending
                .retain(|p| targets.iter().any(|t| p.starts_with(t)));
            if self.pending.is_empty() {
                self.burst = None;
            }
            self.targets = targets;
        }
        self.reconcile();
    }

    /// Waits for changes made outside our runs; debounced; returns the changed watched paths.
    pub async fn changed(&mut self) -> Vec<PathBuf> {
        // Cancel-safe: everything seen is kept in `self` before any await.
        loop {
            let settle = if self.run.is_none() {
                self.burst.map(|b| b.deadline())
            } else {
                None
            };
            if let Some(deadline) = settle {
                if Instant::now() >= deadline {
                    self.burst = None;
                    let changed: Vec<PathBuf> =
                        std::mem::take(&mut self.pending).into_iter().collect();
                    if !changed.is_empty() {
                        return changed;
                    }
                    continue;
                }
            }
            let wake = [settle, self.next_retry].into_iter().flatten().min();
            let timer = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let received = tokio::select! {
                received = self.events.recv() => Some(received),
                () = timer => None,
            };
            match received {
                Some(Some(first)) => self.absorb(Some(first)),
                Some(None) => {
                    // Only dropping the watcher closes the channel, and we
                    // own it: never expected, but never spin on it.
                    tracing::error!(
                        "the file watcher stopped: monitored files are no longer watched"
                    );
                    std::future::pending::<()>().await;
                }
                None => {
                    if self.next_retry.is_some_and(|at| Instant::now() >= at) {
                        self.reconcile();
                    }
                }
            }
        }
    }

    /// Our Puppet run starts: events are queued, not reported, until run_finished.
    pub fn run_started(&mut self) {
        self.flush();
        if !self.pending.is_empty() {
            // The run starts after these changes: it enforces over them.
            tracing::debug!(
                paths = ?self.pending,
                "changes before the run are covered by it"
            );
        }
        self.pending.clear();
        self.burst = None;
        self.after_run = None;
        self.run = Some(BTreeMap::new());
    }

    /// Our run ended; `written`: when Puppet last wrote each file (puppet::written_files).
    /// Returns the watched files changed during the run by someone else (tampered mid-run).
    pub fn run_finished(&mut self, written: &BTreeMap<PathBuf, SystemTime>) -> Vec<PathBuf> {
        self.flush();
        let Some(changed) = self.run.take() else {
            tracing::debug!("run_finished without run_started");
            return Vec::new();
        };
        let mut tampered = Vec::new();
        for (path, appeared) in changed {
            let verdict = verdict::judge(
                verdict::latest_change(&path),
                appeared,
                written_at(written, &path),
            );
            match verdict {
                Verdict::Puppets => tracing::debug!(path = %path.display(), "restored by Puppet"),
                Verdict::Transient => {
                    tracing::debug!(path = %path.display(), "came and went during the run")
                }
                Verdict::Tampered => {
                    tracing::info!(path = %path.display(), "changed by someone else during the run");
                    tampered.push(path);
                }
            }
        }
        self.after_run = Some(AfterRun {
            until: Instant::now() + LATE_EVENTS,
            written: written.clone(),
        });
        tampered
    }

    /// Waits (briefly) until every event before now has been delivered,
    /// then takes them all.
    fn flush(&mut self) {
        self.barrier();
        self.absorb(None);
    }

    /// Creates a fresh file in the barrier directory and waits until the
    /// notify thread has handed over its creation: inotify delivers events
    /// in order, so everything before it is in our channel by then.
    fn barrier(&mut self) {
        let Some(barrier) = &mut self.barrier else {
            return;
        };
        barrier.next += 1;
        let marker = barrier.dir.join(format!("b{}", barrier.next));
        if let Err(e) = fs::File::create(&marker) {
            tracing::debug!(path = %marker.display(), "event barrier unusable: {e}");
            return;
        }
        let deadline = std::time::Instant::now() + BARRIER_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match barrier.seen.recv_timeout(left) {
                Ok(seen) if seen == marker => break,
                Ok(_) => continue,
                Err(_) => {
                    tracing::debug!("event barrier not seen in time; taking events as they are");
                    break;
                }
            }
        }
        let _ = fs::remove_file(&marker);
    }

    /// Takes `first` and everything already queued, then re-arms if the
    /// events changed what is watched.
    fn absorb(&mut self, first: Option<notify::Result<Event>>) {
        let mut rearm = first.is_some_and(|e| self.ingest(e));
        for _ in 0..CHANNEL {
            match self.events.try_recv() {
                Ok(event) => rearm |= self.ingest(event),
                Err(_) => break,
            }
        }
        if self.overflowed.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "file events were lost (too many at once): every monitored path counts as changed"
            );
            self.record_all();
            rearm = true;
        }
        if rearm {
            self.reconcile();
        }
    }

    /// Records one event; true when it may have changed what must be
    /// watched (something created, removed or renamed).
    fn ingest(&mut self, result: notify::Result<Event>) -> bool {
        let event = match result {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(
                    paths = ?e.paths,
                    "file watch error (will re-arm): {e}"
                );
                // A watch that failed inside a tree (the limit reached while
                // adding a new subdirectory): the tree is set up again.
                for path in &e.paths {
                    self.invalidate_containing(path);
                }
                return true;
            }
        };
        if event.need_rescan() {
            tracing::warn!(
                "the kernel dropped file events: every monitored path counts as changed"
            );
            self.record_all();
            return true;
        }
        let appeared = event.kind.is_create();
        for path in &event.paths {
            for changed in self.plan.map(path) {
                self.record(changed, appeared);
            }
        }
        let gone = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        if gone {
            // A watched directory (or one above it) removed or moved away:
            // its watch is lost or would report under the old name.
            for path in &event.paths {
                self.invalidate_below(path);
            }
        }
        gone || matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Any | EventKind::Other
        )
    }

    fn record(&mut self, path: PathBuf, appeared: bool) {
        if let Some(run) = &mut self.run {
            run.entry(path).or_insert(appeared);
            return;
        }
        if let Some(after) = &self.after_run {
            if Instant::now() < after.until
                && verdict::judge(
                    verdict::latest_change(&path),
                    false,
                    written_at(&after.written, &path),
                ) == Verdict::Puppets
            {
                tracing::debug!(path = %path.display(), "late event of Puppet's own write");
                return;
            }
        }
        self.pending.insert(path);
        let now = Instant::now();
        match &mut self.burst {
            Some(burst) => burst.last = now,
            None => {
                self.burst = Some(Burst {
                    first: now,
                    last: now,
                })
            }
        }
    }

    fn record_all(&mut self) {
        for target in self.targets.clone() {
            self.record(target, false);
        }
    }

    /// Forgets (and unwatches) armed directories at or below `path`.
    fn invalidate_below(&mut self, path: &Path) {
        let lost: Vec<PathBuf> = self
            .armed
            .keys()
            .filter(|armed| armed.starts_with(path))
            .cloned()
            .collect();
        for dir in lost {
            self.disarm(&dir);
        }
    }

    /// Forgets (and unwatches) the armed directory holding `path`'s watch.
    fn invalidate_containing(&mut self, path: &Path) {
        let lost: Vec<PathBuf> = self
            .armed
            .iter()
            .filter(|(dir, armed)| {
                path == dir.as_path() || (armed.mode == Mode::Recursive && path.starts_with(dir))
            })
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in lost {
            self.disarm(&dir);
        }
    }

    fn disarm(&mut self, dir: &Path) {
        self.armed.remove(dir);
        // Fails when inotify already dropped it (directory gone): fine.
        if let Err(e) = self.watcher.unwatch(dir) {
            tracing::trace!(dir = %dir.display(), "unwatch: {e}");
        }
    }

    /// Brings the watches in line with the list and the file system.
    fn reconcile(&mut self) {
        let plan = Plan::build(&self.targets);
        let stale: Vec<PathBuf> = self
            .armed
            .iter()
            .filter(|(dir, armed)| {
                plan.watches.get(*dir) != Some(&armed.mode) || identity(dir) != Some(armed.id)
            })
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in stale {
            self.disarm(&dir);
        }
        for (dir, mode) in &plan.watches {
            if self.armed.contains_key(dir) {
                continue;
            }
            let armed = self
                .watcher
                .watch(dir, (*mode).into())
                .map_err(|e| e.to_string())
                .and_then(|()| identity(dir).ok_or_else(|| "vanished".to_string()));
            match armed {
                Ok(id) => {
                    self.armed.insert(dir.clone(), Armed { mode: *mode, id });
                    if self.failing.remove(dir).is_some() {
                        tracing::info!(dir = %dir.display(), "watching again");
                    }
                }
                Err(error) => {
                    // A partly set up tree holds watches others could use.
                    let _ = self.watcher.unwatch(dir);
                    if self.failing.get(dir) != Some(&error) {
                        tracing::warn!(
                            dir = %dir.display(),
                            "cannot watch (retrying every {}s): {error}",
                            RETRY.as_secs()
                        );
                    }
                    self.failing.insert(dir.clone(), error);
                }
            }
        }
        self.failing.retain(|dir, _| plan.watches.contains_key(dir));

        let armed = &self.armed;
        let degraded: BTreeSet<PathBuf> = self
            .targets
            .iter()
            .filter(|t| {
                plan.unreachable.contains(*t)
                    || plan
                        .needs(t)
                        .any(|dir| !plan::covered(dir, armed.iter().map(|(p, a)| (p, a.mode))))
            })
            .cloned()
            .collect();
        for target in degraded.difference(&self.degraded) {
            if plan.unreachable.contains(target) {
                tracing::warn!(
                    path = %target.display(),
                    "its directory does not exist: watched once it does"
                );
            }
        }
        // Whatever was not watched may have changed unseen: a path that
        // exists now that it is watched again counts as changed.
        let recovered: Vec<PathBuf> = self
            .degraded
            .difference(&degraded)
            .filter(|t| self.targets.contains(t) && fs::symlink_metadata(t).is_ok())
            .cloned()
            .collect();
        self.degraded = degraded;
        self.plan = plan;
        self.next_retry = if self.degraded.is_empty() && self.failing.is_empty() {
            None
        } else {
            Some(Instant::now() + RETRY)
        };
        for target in recovered {
            tracing::info!(path = %target.display(), "watched now");
            self.record(target, false);
        }
    }
}

/// Events that change content or metadata; reads, opens and closes
/// without writing do not.
fn counts(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Which directory this is (device and inode).
fn identity(dir: &Path) -> Option<(u64, u64)> {
    fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// When Puppet wrote `path`, by the name given or the canonical one.
fn written_at(written: &BTreeMap<PathBuf, SystemTime>, path: &Path) -> Option<SystemTime> {
    written.get(path).copied().or_else(|| {
        let canonical = fs::canonicalize(path).ok()?;
        written.get(&canonical).copied()
    })
}

/// A fresh private directory for the event barrier; `None` if the temp
/// directory cannot take one (the barrier is then skipped).
fn make_barrier_dir() -> Option<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("pvc-agent-watch.{}.{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Some(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), "no event barrier: {e}");
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
