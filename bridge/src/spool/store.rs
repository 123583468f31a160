//! The spool's file operations: segment files, the acknowledgement cursor,
//! and recovery of a directory after a crash.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{self, Decoded};
use super::{Entry, Record, SpoolError};

const CURSOR: &str = "acked";
const CURSOR_TMP: &str = "acked.tmp";
const SEGMENT_SUFFIX: &str = ".seg";

/// A segment file as the spool tracks it.
#[derive(Debug)]
pub struct Segment {
    /// The seq it was created for; also its name.
    pub first_seq: u64,
    pub path: PathBuf,
    /// Bytes of intact frames (the file's length, after recovery).
    pub bytes: u64,
    /// Highest seq in it; 0 while empty.
    pub last_seq: u64,
}

/// What a directory holds after recovery.
pub struct Recovered {
    pub segments: VecDeque<Segment>,
    pub pending: VecDeque<Entry>,
    pub acked: u64,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { what, path, source }
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory", dir))
}

/// Creates a new, empty segment and makes its name durable.
pub fn create_segment(dir: &Path, first_seq: u64) -> Result<(Segment, File), SpoolError> {
    let path = segment_path(dir, first_seq);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io("creating a segment", &path))?;
    sync_dir(dir)?;
    let segment = Segment {
        first_seq,
        path,
        bytes: 0,
        last_seq: 0,
    };
    Ok((segment, file))
}

pub fn open_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io("opening a segment", path))
}

/// Appends one frame and fsyncs it. On failure the file is cut back to
/// `offset` when possible.
pub fn write_frame(
    file: &mut File,
    path: &Path,
    offset: u64,
    frame: &[u8],
) -> Result<(), SpoolError> {
    let result = file
        .write_all(frame)
        .map_err(io("writing a record", path))
        .and_then(|()| file.sync_data().map_err(io("syncing a record", path)));
    if result.is_err() {
        let _ = file.set_len(offset);
    }
    result
}

/// Reads the record whose frame is at `offset` in segment `first_seq`.
pub fn read_record(
    dir: &Path,
    first_seq: u64,
    offset: u64,
    len: u64,
) -> Result<Record, SpoolError> {
    let path = segment_path(dir, first_seq);
    let file = File::open(&path).map_err(io("opening a segment to replay", &path))?;
    let mut data = vec![0u8; len as usize];
    file.read_exact_at(&mut data, offset)
        .map_err(io("reading a record", &path))?;
    match frame::decode(&data) {
        Decoded::Record(record, _) => Ok(record),
        _ => Err(SpoolError::Io {
            what: "reading a record",
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("damaged frame at offset {offset}"),
            ),
        }),
    }
}

/// Replaces the cursor atomically: temporary file, fsync, rename, fsync
/// the directory.
pub fn write_cursor(dir: &Path, acked: u64) -> Result<(), SpoolError> {
    let tmp = dir.join(CURSOR_TMP);
    let mut data = acked.to_le_bytes().to_vec();
    data.extend_from_slice(&frame::crc32(&data).to_le_bytes());
    let mut file = File::create(&tmp).map_err(io("creating the cursor", &tmp))?;
    file.write_all(&data)
        .and_then(|()| file.sync_all())
        .map_err(io("writing the cursor", &tmp))?;
    let path = dir.join(CURSOR);
    std::fs::rename(&tmp, &path).map_err(io("renaming the cursor", &path))?;
    sync_dir(dir)
}

fn read_cursor(dir: &Path) -> Result<u64, SpoolError> {
    let path = dir.join(CURSOR);
    let data = match std::fs::read(&path) {
        Ok(data) => data,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(io("reading the cursor", &path)(error)),
    };
    let valid = data.len() == 12 && frame::crc32(&data[..8]).to_le_bytes() == data[8..12];
    if !valid {
        // Written by rename, so only a damaged disk gets here; replaying
        // everything again is safe (replays are idempotent), losing is not.
        tracing::error!(path = %path.display(), "spool cursor damaged: replaying every record");
        return Ok(0);
    }
    Ok(u64::from_le_bytes(data[..8].try_into().expect("8 bytes")))
}

/// Opens `dir` (creating it), reads the cursor and every segment, cuts off
/// torn or damaged tails and removes segments already acknowledged.
pub fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(io("creating the directory", dir))?;
        // The new directory's own name must survive a crash too.
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        sync_dir(parent.unwrap_or(Path::new(".")))?;
    }
    let _ = std::fs::remove_file(dir.join(CURSOR_TMP));
    let acked = read_cursor(dir)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("listing the directory", dir))? {
        let entry = entry.map_err(io("listing the directory", dir))?;
        let name = entry.file_name();
        let Some(first_seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        names.push(first_seq);
    }
    names.sort_unstable();

    let mut segments = VecDeque::new();
    let mut pending = VecDeque::new();
    let mut last_seq = 0u64;
    let mut changed = false;
    for first_seq in names {
        let path = segment_path(dir, first_seq);
        let data = std::fs::read(&path).map_err(io("reading a segment", &path))?;
        let mut offset = 0usize;
        let mut segment_last = 0u64;
        let mut damage = None;
        while offset < data.len() {
            match frame::decode(&data[offset..]) {
                Decoded::Record(record, len) if record.seq > last_seq => {
                    last_seq = record.seq;
                    segment_last = record.seq;
                    if record.seq > acked {
                        pending.push_back(Entry {
                            seq: record.seq,
                            segment: first_seq,
                            offset: offset as u64,
                            len: len as u64,
                        });
                    }
                    offset += len;
                }
                Decoded::Record(..) => {
                    damage = Some("sequence out of order");
                    break;
                }
                Decoded::Truncated => {
                    damage = Some("torn record");
                    break;
                }
                Decoded::Corrupt => {
                    damage = Some("checksum mismatch");
                    break;
                }
            }
        }
        if let Some(reason) = damage {
            tracing::warn!(
                path = %path.display(),
                offset,
                cut_bytes = data.len() - offset,
                reason,
                "spool recovery: cutting off a damaged tail"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io("opening a segment to repair", &path))?;
            file.set_len(offset as u64)
                .and_then(|()| file.sync_all())
                .map_err(io("cutting a damaged tail", &path))?;
            changed = true;
        }
        if offset == 0 || segment_last <= acked {
            std::fs::remove_file(&path).map_err(io("removing an acknowledged segment", &path))?;
            changed = true;
            continue;
        }
        segments.push_back(Segment {
            first_seq,
            path,
            bytes: offset as u64,
            last_seq: segment_last,
        });
    }
    if changed {
        sync_dir(dir)?;
    }
    if !pending.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            records = pending.len(),
            oldest_seq = pending.front().map(|e| e.seq),
            "spool recovered records awaiting replay"
        );
    }
    Ok(Recovered {
        segments,
        pending,
        acked,
    })
}
