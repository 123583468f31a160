//! Spool tests on real files in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

/// A fresh directory per test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "pvc-spool-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
    }
}

fn open(dir: &Path) -> Spool {
    Spool::open(config(dir, 1 << 20, 256)).expect("open")
}

fn body(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i}}}").into_bytes()
}

/// Replays everything, returning the records.
fn drain(spool: &Spool) -> Vec<Record> {
    let mut seen = Vec::new();
    spool
        .replay(|r| {
            seen.push(r.clone());
            Ok::<(), Rejection<()>>(())
        })
        .expect("replay");
    seen
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn records_replay_in_order_and_are_acknowledged_once() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    let seqs: Vec<u64> = (0..20)
        .map(|i| {
            spool
                .append("facts", &format!("host{i}"), &body(i))
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let stats = spool.pending();
    assert_eq!(stats.records, 20);
    assert_eq!(stats.oldest_seq, Some(seqs[0]));
    assert!(stats.bytes > 0);

    let seen = drain(&spool);
    assert_eq!(seen.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs);
    for (i, record) in seen.iter().enumerate() {
        assert_eq!(record.kind, "facts");
        assert_eq!(record.key, format!("host{i}"));
        assert_eq!(record.body, body(i));
    }
    assert_eq!(spool.pending().records, 0);
    assert!(drain(&spool).is_empty(), "acknowledged records came back");
}

#[test]
fn records_survive_close_and_reopen_and_seqs_are_not_reused() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    for i in 0..10 {
        spool.append("report", "db01", &body(i)).unwrap();
    }
    drop(spool);

    let spool = open(&dir.0);
    assert_eq!(spool.pending().records, 10);
    let seen = drain(&spool);
    assert_eq!(seen.len(), 10);
    assert_eq!(seen[9].body, body(9));
    drop(spool);

    // Everything acknowledged and its segments gone: seqs still go on.
    let spool = open(&dir.0);
    assert_eq!(spool.pending().records, 0);
    let next = spool.append("facts", "web01", b"{}").unwrap();
    assert!(next > seen[9].seq, "seq {next} reused");
}

#[test]
fn a_torn_last_record_is_cut_off() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    for i in 0..3 {
        spool.append("facts", "web01", &body(i)).unwrap();
    }
    drop(spool);
    let last = segment_files(&dir.0).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);

    let spool = open(&dir.0);
    assert_eq!(spool.pending().records, 2);
    // The spool goes on appending after the cut.
    let seq = spool.append("facts", "web01", &body(9)).unwrap();
    drop(spool);
    let spool = open(&dir.0);
    let seen = drain(&spool);
    let bodies: Vec<_> = seen.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, vec![body(0), body(1), body(9)]);
    assert_eq!(seen[2].seq, seq);
}

#[test]
fn garbage_after_the_last_record_is_cut_off() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    spool.append("facts", "web01", &body(0)).unwrap();
    drop(spool);
    let last = segment_files(&dir.0).pop().unwrap();
    let before = std::fs::metadata(&last).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut file, &[0xAB; 40]).unwrap();
    drop(file);

    let spool = open(&dir.0);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), before);
    let seen = drain(&spool);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body(0));
}

#[test]
fn a_refused_record_stays_with_everything_after_it() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    for i in 0..5 {
        spool
            .append("facts", &format!("host{i}"), &body(i))
            .unwrap();
    }
    let mut calls = Vec::new();
    let result = spool.replay(|r| {
        calls.push(r.seq);
        if r.key == "host2" {
            Err(Rejection::Retry("primary down"))
        } else {
            Ok(())
        }
    });
    match result {
        Err(ReplayError::Consumer { seq, error }) => {
            assert_eq!(seq, calls[2]);
            assert_eq!(error, "primary down");
        }
        other => panic!("expected a consumer error, got {other:?}"),
    }
    assert_eq!(calls.len(), 3, "replay went on after an error");
    assert_eq!(spool.pending().records, 3);
    drop(spool);

    let spool = open(&dir.0);
    let keys: Vec<_> = drain(&spool).into_iter().map(|r| r.key).collect();
    assert_eq!(keys, vec!["host2", "host3", "host4"]);
}

#[test]
fn a_bounded_spool_answers_full_and_accepts_again_after_replay() {
    let dir = TempDir::new();
    let spool = Spool::open(config(&dir.0, 300, 100)).unwrap();
    let mut accepted = 0;
    let full = loop {
        match spool.append("facts", "web01", &[7u8; 40]) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 100, "never full");
    };
    assert!(matches!(full, SpoolError::Full { .. }), "{full:?}");
    let stats = spool.pending();
    assert!(stats.disk_bytes <= 300, "{stats:?}");
    assert_eq!(stats.records, accepted);
    assert_eq!(stats.full_total, 1);
    assert!(matches!(
        spool.append("facts", "web01", &[0u8; 400]),
        Err(SpoolError::TooLarge { .. })
    ));

    assert!(matches!(
        spool.append("facts", &"h".repeat(70_000), b"{}"),
        Err(SpoolError::FieldTooLong { field: "key", .. })
    ));
    assert_eq!(
        spool.pending().records,
        accepted,
        "a refused record was kept"
    );

    assert_eq!(drain(&spool).len() as u64, accepted);
    spool.append("facts", "web01", &[7u8; 40]).unwrap();
}

#[test]
fn concurrent_appends_lose_nothing() {
    let dir = TempDir::new();
    // Small segments: appends roll and replays delete segments while
    // other threads write.
    let spool = Arc::new(Spool::open(config(&dir.0, 1 << 24, 512)).unwrap());
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let spool = Arc::clone(&spool);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| spool.append("facts", &format!("t{t}"), &body(i)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    // Replays run beside the appends until every writer is done.
    let mut seen = Vec::new();
    while !writers.iter().all(|w| w.is_finished()) {
        seen.extend(drain(&spool));
    }
    let mut appended: Vec<u64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    drop(Arc::try_unwrap(spool).ok().expect("one owner"));
    let spool = Spool::open(config(&dir.0, 1 << 24, 512)).unwrap();
    seen.extend(drain(&spool));
    let seqs: Vec<u64> = seen.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order");
    appended.sort_unstable();
    assert_eq!(seqs, appended);
    for t in 0..8 {
        let bodies: Vec<_> = seen
            .iter()
            .filter(|r| r.key == format!("t{t}"))
            .map(|r| r.body.clone())
            .collect();
        assert_eq!(bodies, (0..50).map(body).collect::<Vec<_>>(), "thread {t}");
    }
    let stats = spool.pending();
    assert_eq!((stats.records, stats.segments, stats.disk_bytes), (0, 0, 0));
}

#[test]
fn acknowledged_segments_are_removed() {
    let dir = TempDir::new();
    let spool = Spool::open(config(&dir.0, 1 << 20, 64)).unwrap();
    for i in 0..10 {
        spool.append("facts", "web01", &body(i)).unwrap();
    }
    let segments = segment_files(&dir.0).len();
    assert!(segments >= 5, "{segments} segments");
    assert_eq!(spool.pending().segments as usize, segments);

    let mut n = 0;
    let _ = spool.replay(|_| {
        n += 1;
        if n > 4 {
            Err(Rejection::Retry(()))
        } else {
            Ok(())
        }
    });
    let left = segment_files(&dir.0).len();
    assert!(left < segments && left > 0, "{left} of {segments} left");
    drain(&spool);
    assert!(segment_files(&dir.0).is_empty());
    assert_eq!(spool.pending().disk_bytes, 0);
}

#[test]
fn a_crash_before_acknowledging_replays_the_record_again() {
    let dir = TempDir::new();
    let image = TempDir::new();
    let spool = open(&dir.0);
    for i in 0..5 {
        spool
            .append("facts", &format!("host{i}"), &body(i))
            .unwrap();
    }
    // While host2 is being processed, take the disk as a crash would
    // leave it.
    let replayed = spool.replay(|r| {
        if r.key == "host2" {
            crash_image(&dir.0, &image.0);
        }
        Ok::<(), Rejection<()>>(())
    });
    assert_eq!(replayed.unwrap(), 5);

    let after_crash = open(&image.0);
    let keys: Vec<_> = drain(&after_crash).into_iter().map(|r| r.key).collect();
    assert!(keys.contains(&"host2".to_string()), "{keys:?}");
    assert!(
        keys.ends_with(&["host2".into(), "host3".into(), "host4".into()]),
        "{keys:?}"
    );
}

/// Copies the spool directory as a crash at this instant would leave it.
fn crash_image(dir: &Path, image: &Path) {
    std::fs::create_dir_all(image).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, image.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_crash_mid_replay_resumes_from_the_last_persisted_batch() {
    let dir = TempDir::new();
    let image = TempDir::new();
    let spool = Spool::open(config(&dir.0, 1 << 24, 4096)).unwrap();
    for i in 0..150 {
        spool
            .append("facts", &format!("host{i}"), &body(i))
            .unwrap();
    }
    let replayed = spool.replay(|r| {
        if r.key == "host100" {
            crash_image(&dir.0, &image.0);
        }
        Ok::<(), Rejection<()>>(())
    });
    assert_eq!(replayed.unwrap(), 150);

    // The first batch was persisted: only what follows it comes back, and
    // everything from the record in flight on.
    let after_crash = Spool::open(config(&image.0, 1 << 24, 4096)).unwrap();
    let keys: Vec<_> = drain(&after_crash).into_iter().map(|r| r.key).collect();
    let expected: Vec<_> = (ACK_BATCH..150).map(|i| format!("host{i}")).collect();
    assert_eq!(keys, expected);
}

#[test]
fn damage_inside_an_older_segment_keeps_the_later_segments() {
    let dir = TempDir::new();
    let spool = Spool::open(config(&dir.0, 1 << 20, 64)).unwrap();
    for i in 0..6 {
        spool
            .append("facts", &format!("host{i}"), &body(i))
            .unwrap();
    }
    drop(spool);
    let segments = segment_files(&dir.0);
    assert!(segments.len() >= 3, "{segments:?}");
    // Flip the last byte of the first segment's (only or last) record.
    let mut data = std::fs::read(&segments[0]).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xFF;
    std::fs::write(&segments[0], &data).unwrap();

    let spool = Spool::open(config(&dir.0, 1 << 20, 64)).unwrap();
    let keys: Vec<_> = drain(&spool).into_iter().map(|r| r.key).collect();
    assert!(!keys.contains(&"host0".to_string()), "{keys:?}");
    assert!(
        keys.ends_with(&["host4".into(), "host5".into()]),
        "{keys:?}"
    );
}

#[test]
fn a_damaged_cursor_replays_rather_than_loses() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    for i in 0..4 {
        spool
            .append("facts", &format!("host{i}"), &body(i))
            .unwrap();
    }
    let mut n = 0;
    let _ = spool.replay(|_| {
        n += 1;
        if n > 2 {
            Err(Rejection::Retry(()))
        } else {
            Ok(())
        }
    });
    drop(spool);
    assert_eq!(open(&dir.0).pending().records, 2);
    std::fs::write(dir.0.join("acked"), b"garbage").unwrap();

    let spool = open(&dir.0);
    let keys: Vec<_> = drain(&spool).into_iter().map(|r| r.key).collect();
    assert_eq!(keys, vec!["host0", "host1", "host2", "host3"]);
}

/// The dead-letter file's lines, parsed.
fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(dir.join("dead-letters.jsonl")) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading the dead-letter file: {e}"),
    }
}

#[test]
fn a_refused_record_is_set_aside_and_the_replay_goes_on() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(
            spool
                .append("facts", &format!("host{i}"), &body(i))
                .unwrap(),
        );
    }
    spool.append("report", "host5", b"\xffnot json").unwrap();
    let mut stored = Vec::new();
    let replayed = spool
        .replay(|r| match r.key.as_str() {
            "host1" | "host3" => Err(Rejection::DeadLetter(format!("{} is invalid", r.key))),
            "host5" => Err(Rejection::DeadLetter("unreadable".into())),
            _ => {
                stored.push(r.key.clone());
                Ok::<(), Rejection<()>>(())
            }
        })
        .expect("replay");
    assert_eq!(replayed, 6, "dead letters are acknowledged too");
    assert_eq!(stored, vec!["host0", "host2", "host4"]);
    let stats = spool.pending();
    assert_eq!((stats.records, stats.dead_letters_total), (0, 3));
    assert_eq!(spool.dead_letter_path(), dir.0.join("dead-letters.jsonl"));

    let lines = dead_letters(&dir.0);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["seq"], seqs[1]);
    assert_eq!(lines[0]["kind"], "facts");
    assert_eq!(lines[0]["key"], "host1");
    assert_eq!(lines[0]["error"], "host1 is invalid");
    assert_eq!(lines[0]["body"], serde_json::json!({"n": 1}));
    assert_eq!(lines[1]["key"], "host3");
    assert_eq!(lines[2]["kind"], "report");
    assert!(lines[2]["body_base64"].is_string(), "{}", lines[2]);

    // Set aside for good: they never come back, after a restart either.
    drop(spool);
    let spool = open(&dir.0);
    assert!(drain(&spool).is_empty());
    assert_eq!(dead_letters(&dir.0).len(), 3, "the file is kept");
}

#[test]
fn a_retry_after_a_dead_letter_keeps_the_rest_and_the_dead_letter_once() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    for i in 0..4 {
        spool
            .append("facts", &format!("host{i}"), &body(i))
            .unwrap();
    }
    let result = spool.replay(|r| match r.key.as_str() {
        "host0" => Err(Rejection::DeadLetter("invalid".into())),
        "host2" => Err(Rejection::Retry("primary down")),
        _ => Ok(()),
    });
    assert!(
        matches!(
            result,
            Err(ReplayError::Consumer {
                error: "primary down",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(spool.pending().records, 2);
    drop(spool);
    let spool = open(&dir.0);
    let keys: Vec<_> = drain(&spool).into_iter().map(|r| r.key).collect();
    assert_eq!(keys, vec!["host2", "host3"]);
    let lines = dead_letters(&dir.0);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["key"], "host0");
}

#[test]
fn a_dead_letter_file_that_cannot_be_written_keeps_the_record() {
    let dir = TempDir::new();
    let spool = open(&dir.0);
    spool.append("facts", "host0", &body(0)).unwrap();
    spool.append("facts", "host1", &body(1)).unwrap();
    // A directory where the file should be: appending fails.
    std::fs::create_dir(dir.0.join("dead-letters.jsonl")).unwrap();
    let result = spool.replay(|_| Err(Rejection::<()>::DeadLetter("invalid".into())));
    assert!(matches!(result, Err(ReplayError::Spool(_))), "{result:?}");
    let stats = spool.pending();
    assert_eq!((stats.records, stats.dead_letters_total), (2, 0));
    std::fs::remove_dir(dir.0.join("dead-letters.jsonl")).unwrap();
    let replayed = spool
        .replay(|_| Err(Rejection::<()>::DeadLetter("invalid".into())))
        .unwrap();
    assert_eq!(replayed, 2);
    assert_eq!(dead_letters(&dir.0).len(), 2);
}
