//! Reports and facts the bridge could not take yet (unreachable, or a 5xx
//! answer), kept on disk in `spool_dir` and sent again, in order, once the
//! bridge answers.
//!
//! One file per item, written atomically (temporary file, fsync, rename):
//! `<seq>.report.json` for each report, and one slot for facts,
//! `<seq>.facts.json` (newer facts supersede older ones, so only the newest
//! is kept). The directory is bounded by `max_bytes`: facts are dropped
//! first, reports are kept and a new one is refused only when reports
//! alone fill it. An item the bridge refuses itself (a 4xx answer) is moved
//! to `rejected/` and logged, never retried.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context as _};

use crate::client::{BridgeClient, ClientError};

/// What an outbox item is: where it is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// `POST /report`: each one kept.
    Report,
    /// `POST /facts`: only the newest kept.
    Facts,
}

impl OutboxKind {
    fn suffix(self) -> &'static str {
        match self {
            OutboxKind::Report => ".report.json",
            OutboxKind::Facts => ".facts.json",
        }
    }

    fn of(name: &str) -> Option<OutboxKind> {
        if name.ends_with(OutboxKind::Report.suffix()) {
            Some(OutboxKind::Report)
        } else if name.ends_with(OutboxKind::Facts.suffix()) {
            Some(OutboxKind::Facts)
        } else {
            None
        }
    }
}

/// One stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    seq: u64,
    kind: OutboxKind,
    path: PathBuf,
    bytes: u64,
}

/// The on-disk outbox.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    max_bytes: u64,
    /// The last sequence number used; guards pushes against each other.
    seq: Mutex<u64>,
}

/// Where refused items go.
const REJECTED: &str = "rejected";
const TMP_PREFIX: &str = ".tmp-";

impl Outbox {
    /// Opens (creating) `dir`; leftovers of an interrupted write are removed.
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Outbox> {
        fs::create_dir_all(dir.join(REJECTED))
            .with_context(|| format!("cannot create the spool directory {}", dir.display()))?;
        for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        let outbox = Outbox {
            dir: dir.to_owned(),
            max_bytes,
            seq: Mutex::new(0),
        };
        let last = outbox.items()?.last().map_or(0, |i| i.seq);
        *outbox.seq.lock().expect("outbox lock") = last;
        Ok(outbox)
    }

    /// The items in order (oldest first).
    fn items(&self) -> anyhow::Result<Vec<Item>> {
        let mut items = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(kind) = OutboxKind::of(&name) else {
                continue;
            };
            let Some(seq) = name.split('.').next().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            items.push(Item {
                seq,
                kind,
                path: entry.path(),
                bytes,
            });
        }
        items.sort_by_key(|i| i.seq);
        Ok(items)
    }

    /// Keeps `body` to be sent later. Facts replace any older facts; when
    /// the outbox is full, facts are dropped first and a report is refused
    /// only when reports alone fill it (an error, logged by the caller).
    pub fn push(&self, kind: OutboxKind, body: &[u8]) -> anyhow::Result<()> {
        let mut seq = self.seq.lock().expect("outbox lock");
        let items = self.items()?;
        let new = body.len() as u64;
        let facts: Vec<&Item> = items
            .iter()
            .filter(|i| i.kind == OutboxKind::Facts)
            .collect();
        let facts_bytes: u64 = facts.iter().map(|i| i.bytes).sum();
        let others = items.iter().map(|i| i.bytes).sum::<u64>() - facts_bytes;
        if others + new > self.max_bytes {
            bail!(
                "outbox {} is full ({others} of {} bytes in undelivered reports): this {} ({new} bytes) is not kept",
                self.dir.display(),
                self.max_bytes,
                match kind {
                    OutboxKind::Report => "report",
                    OutboxKind::Facts => "facts upload",
                }
            );
        }
        // New facts supersede older ones; a report takes their room when
        // it needs it.
        let drop_facts = kind == OutboxKind::Facts || others + facts_bytes + new > self.max_bytes;
        if drop_facts {
            for old in facts {
                fs::remove_file(&old.path)
                    .with_context(|| format!("cannot remove {}", old.path.display()))?;
                if kind == OutboxKind::Report {
                    tracing::warn!(
                        "outbox full ({} bytes): dropped undelivered facts to keep a report",
                        self.max_bytes
                    );
                }
            }
        }
        let next = *seq + 1;
        let name = format!("{next:020}{}", kind.suffix());
        write_atomically(&self.dir, &name, body)?;
        *seq = next;
        Ok(())
    }

    /// Items waiting.
    pub fn pending(&self) -> usize {
        self.items().map(|i| i.len()).unwrap_or(0)
    }

    /// Sends the items in order; returns how many the bridge took. Stops at
    /// the first failure worth retrying (the rest wait for the next drain);
    /// an item the bridge refuses (4xx) is moved to `rejected/`.
    pub async fn drain(&self, client: &BridgeClient) -> usize {
        let items = match self.items() {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!("outbox: {e:#}");
                return 0;
            }
        };
        let mut sent = 0;
        for item in items {
            let body = match fs::read(&item.path) {
                Ok(body) => body,
                // Superseded (newer facts) since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!("outbox: cannot read {}: {e}", item.path.display());
                    self.reject(&item);
                    continue;
                }
            };
            let result = match item.kind {
                OutboxKind::Report => client.post_report(&body).await,
                OutboxKind::Facts => client.post_facts(&body).await,
            };
            match result {
                Ok(()) => {
                    if let Err(e) = fs::remove_file(&item.path) {
                        tracing::warn!("outbox: cannot remove {}: {e}", item.path.display());
                    }
                    sent += 1;
                }
                Err(e) if refused_by_bridge(&e) => {
                    tracing::warn!(
                        "outbox: the bridge refused {} ({e}); moved to {}/",
                        item.path.display(),
                        self.dir.join(REJECTED).display()
                    );
                    self.reject(&item);
                }
                Err(e) => {
                    tracing::info!("outbox: {} item(s) still undelivered: {e}", self.pending());
                    break;
                }
            }
        }
        if sent > 0 {
            tracing::info!("outbox: delivered {sent} undelivered item(s)");
        }
        sent
    }

    fn reject(&self, item: &Item) {
        let Some(name) = item.path.file_name() else {
            return;
        };
        let target = self.dir.join(REJECTED).join(name);
        if let Err(e) = fs::rename(&item.path, &target) {
            tracing::warn!("outbox: cannot move {} aside: {e}", item.path.display());
            let _ = fs::remove_file(&item.path);
        }
    }
}

/// A 4xx answer other than the retryable ones: the bridge refuses the item
/// itself, and sending it again would be refused again.
fn refused_by_bridge(e: &ClientError) -> bool {
    matches!(e, ClientError::Status { status, .. } if (400..500).contains(status)) && !e.retryable()
}

/// `dir/name` holds `body` completely or not at all, even across a crash.
fn write_atomically(dir: &Path, name: &str, body: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let target = dir.join(name);
    let mut file =
        File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(body)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, &target).with_context(|| format!("cannot rename to {}", target.display()))?;
    // The rename itself is durable once the directory is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pvc-agent-outbox-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn contents(outbox: &Outbox) -> Vec<(OutboxKind, String)> {
        outbox
            .items()
            .unwrap()
            .into_iter()
            .map(|i| (i.kind, fs::read_to_string(&i.path).unwrap()))
            .collect()
    }

    #[test]
    fn items_keep_their_order_and_facts_one_slot() {
        let dir = temp_dir("order");
        let outbox = Outbox::open(&dir, 1 << 20).unwrap();
        outbox.push(OutboxKind::Report, b"r1").unwrap();
        outbox.push(OutboxKind::Facts, b"f1").unwrap();
        outbox.push(OutboxKind::Report, b"r2").unwrap();
        outbox.push(OutboxKind::Facts, b"f2").unwrap();
        assert_eq!(outbox.pending(), 3);
        assert_eq!(
            contents(&outbox),
            vec![
                (OutboxKind::Report, "r1".into()),
                (OutboxKind::Report, "r2".into()),
                (OutboxKind::Facts, "f2".into()),
            ]
        );
        // Reopened (a restart): same items, new ones after them; a torn
        // temporary file is gone.
        fs::write(dir.join(".tmp-00000000000000000009.report.json"), b"torn").unwrap();
        drop(outbox);
        let outbox = Outbox::open(&dir, 1 << 20).unwrap();
        outbox.push(OutboxKind::Report, b"r3").unwrap();
        let got = contents(&outbox);
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], (OutboxKind::Report, "r3".into()));
        assert!(!dir.join(".tmp-00000000000000000009.report.json").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_outbox_drops_facts_first_and_refuses_reports_last() {
        let dir = temp_dir("full");
        let outbox = Outbox::open(&dir, 10).unwrap();
        outbox.push(OutboxKind::Facts, b"ffff").unwrap();
        outbox.push(OutboxKind::Report, b"rrrr").unwrap();
        // 8 of 10 used: a 4-byte report needs the facts' room.
        outbox.push(OutboxKind::Report, b"RRRR").unwrap();
        assert_eq!(
            contents(&outbox),
            vec![
                (OutboxKind::Report, "rrrr".into()),
                (OutboxKind::Report, "RRRR".into()),
            ]
        );
        // Full of reports: a report and facts are refused, nothing lost.
        let err = outbox.push(OutboxKind::Report, b"xxxx").unwrap_err();
        assert!(err.to_string().contains("is full"), "{err}");
        assert!(outbox.push(OutboxKind::Facts, b"ffff").is_err());
        assert_eq!(outbox.pending(), 2);
        // Facts that fit are kept.
        outbox.push(OutboxKind::Facts, b"ff").unwrap();
        assert_eq!(outbox.pending(), 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejected_items_move_aside() {
        let dir = temp_dir("reject");
        let outbox = Outbox::open(&dir, 1 << 20).unwrap();
        outbox.push(OutboxKind::Report, b"bad").unwrap();
        let item = outbox.items().unwrap().remove(0);
        outbox.reject(&item);
        assert_eq!(outbox.pending(), 0);
        let moved: Vec<_> = fs::read_dir(dir.join(REJECTED)).unwrap().collect();
        assert_eq!(moved.len(), 1);
        assert!(refused_by_bridge(&ClientError::Status {
            status: 400,
            body: String::new()
        }));
        for status in [408, 429, 500, 503] {
            assert!(!refused_by_bridge(&ClientError::Status {
                status,
                body: String::new()
            }));
        }
        assert!(!refused_by_bridge(&ClientError::Unreachable("down".into())));
        fs::remove_dir_all(&dir).unwrap();
    }
}
