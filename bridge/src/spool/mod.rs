//! The durable local spool: a bounded, append-only, fsynced on-disk queue
//! that keeps writes accepted from agents while the PostgreSQL primary is
//! unreachable, and replays them in order when it returns.
//!
//! Layout of the directory (one process per directory):
//! - `<first seq, 20 digits>.seg`: segment files of framed records
//!   (`frame`: length + CRC-32), appended and fsynced record by record;
//! - `acked`: the acknowledgement cursor, the highest seq the consumer has
//!   processed, replaced atomically (write, fsync, rename, fsync the
//!   directory). It is kept even when the spool is empty so that sequence
//!   numbers are never reused.
//! - `dead-letters.jsonl`: records the consumer can never take, set aside
//!   (`dead`) so the records behind them are not held back.
//!
//! Delivery is at-least-once: a record is acknowledged only after the
//! consumer returned `Ok`, and the cursor is persisted in batches, so a
//! crash can replay records the consumer already processed. Consumers must
//! make replays idempotent; every record carries a `seq` that is unique and
//! increasing for the life of the directory.

mod dead;
mod frame;
mod store;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use store::Segment;

/// Acknowledgements persisted together: bounds both the fsyncs a replay
/// costs and the records a crash can replay twice.
const ACK_BATCH: usize = 64;

/// Where the spool lives and how large it may grow.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bound on the segment files' total size; `append` answers `Full`
    /// rather than exceed it.
    pub max_bytes: u64,
    /// A new segment is started when a record would take the current one
    /// past this size.
    pub segment_bytes: u64,
}

/// One spooled write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unique and increasing for the life of the spool directory.
    pub seq: u64,
    /// What the write is, e.g. `facts` or `report`.
    pub kind: String,
    /// The certname it is about.
    pub key: String,
    pub body: Vec<u8>,
}

/// What the spool holds, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records not yet acknowledged.
    pub records: u64,
    /// Their framed size in bytes.
    pub bytes: u64,
    /// The seq of the oldest of them.
    pub oldest_seq: Option<u64>,
    /// Size of the segment files (what `max_bytes` bounds).
    pub disk_bytes: u64,
    pub segments: u64,
    /// Since open: records appended, appends refused as full, records
    /// acknowledged by replays.
    pub appended_total: u64,
    pub full_total: u64,
    pub replayed_total: u64,
    /// Since open: records set aside in the dead-letter file.
    pub dead_letters_total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "spool full: {needed} more bytes would exceed max_bytes {max_bytes} ({disk_bytes} in use)"
    )]
    Full {
        needed: u64,
        disk_bytes: u64,
        max_bytes: u64,
    },
    #[error("record of {size} bytes can never fit in a spool of max_bytes {max_bytes}")]
    TooLarge { size: u64, max_bytes: u64 },
    #[error("spool record {field} is {len} bytes, more than {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("spool configuration: {0}")]
    Config(String),
    #[error("spool {what} ({path})")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why the consumer did not take a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection<E> {
    /// Not now (the primary is down, the schema missing): the replay stops
    /// and the record, with all after it, stays for the next one.
    Retry(E),
    /// Never (the database refuses it as invalid, it cannot be decoded):
    /// the record is moved to the dead-letter file with this reason,
    /// acknowledged, and the replay goes on.
    DeadLetter(String),
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E> {
    /// The consumer asked to retry record `seq`; it and all later records
    /// stay.
    #[error("spooled record {seq} not accepted")]
    Consumer { seq: u64, error: E },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// An unacknowledged record: where its frame is.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    segment: u64,
    offset: u64,
    len: u64,
}

struct Inner {
    /// Oldest first; the last one is the one appended to.
    segments: VecDeque<Segment>,
    /// Open for appending: the last segment, while it may grow.
    active: Option<File>,
    pending: VecDeque<Entry>,
    pending_bytes: u64,
    next_seq: u64,
    /// Highest seq acknowledged in memory / on disk.
    acked: u64,
    acked_on_disk: u64,
    /// Set by a refused append, cleared by the next accepted one, so a
    /// full spool logs once rather than once per request.
    full: bool,
}

impl Inner {
    fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
}

/// The spool. Appends from many threads are serialised by a mutex; a replay
/// runs beside them (it holds the lock only between records).
pub struct Spool {
    config: SpoolConfig,
    inner: Mutex<Inner>,
    /// One replay at a time, or two would hand out the same records.
    replaying: Mutex<()>,
    appended_total: AtomicU64,
    full_total: AtomicU64,
    replayed_total: AtomicU64,
    dead_letters_total: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A consumer that panicked mid-replay leaves the state consistent
    // (acknowledgements happen after it returns), so poisoning is ignored.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Spool {
    /// Opens (creating) the spool directory and recovers what a crash left:
    /// a torn or corrupt tail is cut off and logged.
    pub fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        if config.segment_bytes == 0 || config.max_bytes == 0 {
            return Err(SpoolError::Config(
                "max_bytes and segment_bytes must be positive".into(),
            ));
        }
        let recovered = store::recover(&config.dir)?;
        let next_seq = recovered
            .pending
            .back()
            .map(|e| e.seq)
            .max(recovered.segments.back().map(|s| s.last_seq))
            .unwrap_or(0)
            .max(recovered.acked)
            + 1;
        let active = match recovered.segments.back() {
            Some(segment) => Some(store::open_append(&segment.path)?),
            None => None,
        };
        let pending_bytes = recovered.pending.iter().map(|e| e.len).sum();
        let inner = Inner {
            segments: recovered.segments,
            active,
            pending: recovered.pending,
            pending_bytes,
            next_seq,
            acked: recovered.acked,
            acked_on_disk: recovered.acked,
            full: false,
        };
        tracing::info!(
            dir = %config.dir.display(),
            records = inner.pending.len(),
            bytes = pending_bytes,
            segments = inner.segments.len(),
            next_seq,
            "spool opened"
        );
        Ok(Spool {
            config,
            inner: Mutex::new(inner),
            replaying: Mutex::new(()),
            appended_total: AtomicU64::new(0),
            full_total: AtomicU64::new(0),
            replayed_total: AtomicU64::new(0),
            dead_letters_total: AtomicU64::new(0),
        })
    }

    /// Appends a record; it is on disk (fsynced) when this returns its seq.
    /// `Full` when the spool is at `max_bytes`: nothing is dropped, the
    /// caller refuses the write.
    pub fn append(&self, kind: &str, key: &str, body: &[u8]) -> Result<u64, SpoolError> {
        for (field, value) in [("kind", kind), ("key", key)] {
            if value.len() > u16::MAX as usize {
                return Err(SpoolError::FieldTooLong {
                    field,
                    len: value.len(),
                    max: u16::MAX as usize,
                });
            }
        }
        let size = frame::frame_len(kind, key, body);
        if size > self.config.max_bytes || size > frame::MAX_FRAME {
            return Err(SpoolError::TooLarge {
                size,
                max_bytes: self.config.max_bytes.min(frame::MAX_FRAME),
            });
        }
        let mut inner = lock(&self.inner);
        let seq = inner.next_seq;
        let frame = frame::encode(seq, kind, key, body);
        let disk_bytes = inner.disk_bytes();
        if disk_bytes + size > self.config.max_bytes {
            self.full_total.fetch_add(1, Ordering::Relaxed);
            if !inner.full {
                inner.full = true;
                tracing::error!(
                    dir = %self.config.dir.display(),
                    disk_bytes,
                    max_bytes = self.config.max_bytes,
                    records = inner.pending.len(),
                    "spool full: writes are refused until it is replayed"
                );
            }
            return Err(SpoolError::Full {
                needed: size,
                disk_bytes,
                max_bytes: self.config.max_bytes,
            });
        }
        let roll = match inner.segments.back() {
            None => true,
            Some(last) => {
                inner.active.is_none()
                    || (last.bytes > 0 && last.bytes + size > self.config.segment_bytes)
            }
        };
        if roll {
            let (segment, file) = store::create_segment(&self.config.dir, seq)?;
            inner.segments.push_back(segment);
            inner.active = Some(file);
        }
        // The seq is used even if the write fails: a failed fsync may still
        // leave the frame on disk, and seqs must never be reused.
        inner.next_seq += 1;
        let inner = &mut *inner;
        let segment = inner.segments.back_mut().expect("a segment after rolling");
        let file = inner.active.as_mut().expect("an active file after rolling");
        let offset = segment.bytes;
        if let Err(error) = store::write_frame(file, &segment.path, offset, &frame) {
            // The file may end in part of this frame: write the next records
            // to a new segment; recovery cuts the torn frame off.
            inner.active = None;
            return Err(error);
        }
        segment.bytes += size;
        segment.last_seq = seq;
        let first = inner.pending.is_empty();
        inner.pending.push_back(Entry {
            seq,
            segment: segment.first_seq,
            offset,
            len: size,
        });
        inner.pending_bytes += size;
        inner.full = false;
        self.appended_total.fetch_add(1, Ordering::Relaxed);
        if first {
            tracing::warn!(dir = %self.config.dir.display(), seq, "spooling writes");
        }
        Ok(seq)
    }

    /// What the spool holds.
    pub fn pending(&self) -> SpoolStats {
        let inner = lock(&self.inner);
        SpoolStats {
            records: inner.pending.len() as u64,
            bytes: inner.pending_bytes,
            oldest_seq: inner.pending.front().map(|e| e.seq),
            disk_bytes: inner.disk_bytes(),
            segments: inner.segments.len() as u64,
            appended_total: self.appended_total.load(Ordering::Relaxed),
            full_total: self.full_total.load(Ordering::Relaxed),
            replayed_total: self.replayed_total.load(Ordering::Relaxed),
            dead_letters_total: self.dead_letters_total.load(Ordering::Relaxed),
        }
    }

    /// The file refused records are moved to (it exists once one was).
    pub fn dead_letter_path(&self) -> PathBuf {
        dead::path(&self.config.dir)
    }

    /// Hands the records to `f` in seq order, acknowledging each once `f`
    /// returned `Ok`, or once a record `f` answered `DeadLetter` is in the
    /// dead-letter file. Stops at the first `Retry`, keeping that record
    /// and all after it. Records appended while it runs wait for the next
    /// replay. Returns how many records were acknowledged (dead letters
    /// included). At-least-once: see the module documentation.
    pub fn replay<E>(
        &self,
        mut f: impl FnMut(&Record) -> Result<(), Rejection<E>>,
    ) -> Result<usize, ReplayError<E>> {
        let _replaying = lock(&self.replaying);
        let last = lock(&self.inner).next_seq - 1;
        let mut done = 0usize;
        let mut since_persist = 0usize;
        let result = loop {
            let entry = match lock(&self.inner).pending.front().copied() {
                Some(entry) if entry.seq <= last => entry,
                _ => break Ok(()),
            };
            let record = match store::read_record(
                &self.config.dir,
                entry.segment,
                entry.offset,
                entry.len,
            ) {
                Ok(record) if record.seq == entry.seq => record,
                Ok(record) => {
                    break Err(ReplayError::Spool(SpoolError::Io {
                        what: "record out of place",
                        path: store::segment_path(&self.config.dir, entry.segment),
                        source: std::io::Error::other(format!(
                            "expected seq {} at offset {}, found {}",
                            entry.seq, entry.offset, record.seq
                        )),
                    }))
                }
                Err(error) => break Err(ReplayError::Spool(error)),
            };
            match f(&record) {
                Ok(()) => {}
                Err(Rejection::Retry(error)) => {
                    break Err(ReplayError::Consumer {
                        seq: record.seq,
                        error,
                    })
                }
                Err(Rejection::DeadLetter(reason)) => {
                    if let Err(error) = self.dead_letter(&record, &reason) {
                        break Err(ReplayError::Spool(error));
                    }
                }
            }
            {
                let mut inner = lock(&self.inner);
                inner.pending.pop_front();
                inner.pending_bytes -= entry.len;
                inner.acked = entry.seq;
            }
            self.replayed_total.fetch_add(1, Ordering::Relaxed);
            done += 1;
            since_persist += 1;
            if since_persist >= ACK_BATCH {
                since_persist = 0;
                if let Err(error) = self.persist_acks() {
                    break Err(ReplayError::Spool(error));
                }
            }
        };
        // Acknowledgements made so far stand, whatever stopped the replay.
        let persisted = self.persist_acks();
        let stats = self.pending();
        match (&result, &persisted) {
            (Ok(()), Ok(())) if stats.records == 0 && done > 0 => {
                tracing::info!(dir = %self.config.dir.display(), replayed = done, "spool drained: spooling stopped")
            }
            (Ok(()), Ok(())) => {
                tracing::debug!(replayed = done, remaining = stats.records, "spool replayed")
            }
            _ => tracing::warn!(
                replayed = done,
                remaining = stats.records,
                oldest_seq = stats.oldest_seq,
                "spool replay stopped"
            ),
        }
        result?;
        persisted?;
        Ok(done)
    }

    /// Moves `record` to the dead-letter file (durably: it is acknowledged
    /// right after this returns).
    fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), SpoolError> {
        let line = dead::line(record, reason, now_ms());
        let path = dead::append(&self.config.dir, &line)?;
        self.dead_letters_total.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            file = %path.display(),
            seq = record.seq,
            kind = %record.kind,
            host.certname = %record.key,
            reason,
            "spooled record refused: moved to the dead-letter file, replay goes on"
        );
        Ok(())
    }

    /// Writes the cursor, then deletes the segments it fully covers (in
    /// that order: a deleted segment must never come back as unacknowledged,
    /// and the cursor keeps seqs from being reused).
    fn persist_acks(&self) -> Result<(), SpoolError> {
        let mut inner = lock(&self.inner);
        if inner.acked == inner.acked_on_disk {
            return Ok(());
        }
        store::write_cursor(&self.config.dir, inner.acked)?;
        inner.acked_on_disk = inner.acked;
        while let Some(segment) = inner.segments.front() {
            let fully_acked = segment.bytes == 0 || segment.last_seq <= inner.acked;
            if !fully_acked {
                break;
            }
            let path = segment.path.clone();
            if inner.segments.len() == 1 {
                // The segment being appended to: start afresh next time.
                inner.active = None;
            }
            std::fs::remove_file(&path).map_err(|source| SpoolError::Io {
                what: "removing an acknowledged segment",
                path: path.clone(),
                source,
            })?;
            inner.segments.pop_front();
            tracing::debug!(path = %path.display(), "acknowledged spool segment removed");
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
