//! Whether a monitored path that changed during our own Puppet run was
//! Puppet's own write or someone else's: the file's latest change time
//! (ctime, which nobody can set back, and mtime) against the time Puppet's
//! report gives for its write.

use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much later than Puppet's recorded write a file's change time may be
/// and still be Puppet's write. Puppet stamps the change event as it starts
/// changing the resource, before the content is in place (writing a temp
/// file and renaming it takes milliseconds, fetching a large file from the
/// server longer); the kernel stamps files from its coarse clock (a tick
/// behind) and some filesystems keep whole seconds only. One second covers
/// these; the price is that someone else's change to the same file within
/// a second of Puppet's write passes for Puppet's, which on a filesystem
/// with whole seconds could not be told apart anyway.
pub(super) const TOLERANCE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Puppet wrote it last.
    Puppets,
    /// Appeared during the run and is gone again (a temp file, Puppet's or
    /// an editor's): no lasting change.
    Transient,
    /// Someone else changed it, or removed it.
    Tampered,
}

/// `latest_change`: the path's latest ctime/mtime now, `None` when it does
/// not exist; `appeared`: the first event seen for it during the run was
/// its creation; `written`: when Puppet's report says Puppet wrote it.
pub(super) fn judge(
    latest_change: Option<SystemTime>,
    appeared: bool,
    written: Option<SystemTime>,
) -> Verdict {
    match (latest_change, written) {
        (None, _) if appeared => Verdict::Transient,
        // Gone, and Puppet did not put it back.
        (None, _) => Verdict::Tampered,
        (Some(changed), Some(written))
            if changed <= written.checked_add(TOLERANCE).unwrap_or(written) =>
        {
            Verdict::Puppets
        }
        _ => Verdict::Tampered,
    }
}

/// The latest ctime or mtime of `path` (and, for a symlink, of what it
/// points to); `None` when nothing is there.
pub(super) fn latest_change(path: &Path) -> Option<SystemTime> {
    let own = fs::symlink_metadata(path).ok()?;
    let mut latest = changed_at(&own);
    if own.file_type().is_symlink() {
        if let Ok(target) = fs::metadata(path) {
            latest = latest.max(changed_at(&target));
        }
    }
    Some(latest)
}

fn changed_at(meta: &Metadata) -> SystemTime {
    let ctime = timestamp(meta.ctime(), meta.ctime_nsec());
    let mtime = timestamp(meta.mtime(), meta.mtime_nsec());
    ctime.max(mtime)
}

fn timestamp(secs: i64, nsecs: i64) -> SystemTime {
    let (Ok(secs), Ok(nsecs)) = (u64::try_from(secs), u32::try_from(nsecs)) else {
        return UNIX_EPOCH;
    };
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nsecs.min(999_999_999)))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn puppets_write_within_the_tolerance() {
        let written = at(1000, 0);
        assert_eq!(
            judge(Some(at(999, 500)), false, Some(written)),
            Verdict::Puppets
        );
        assert_eq!(
            judge(Some(at(1000, 999)), false, Some(written)),
            Verdict::Puppets
        );
        assert_eq!(
            judge(Some(at(1001, 0)), false, Some(written)),
            Verdict::Puppets
        );
    }

    #[test]
    fn later_than_puppets_write_or_not_written_is_tampered() {
        assert_eq!(
            judge(Some(at(1001, 1)), false, Some(at(1000, 0))),
            Verdict::Tampered
        );
        assert_eq!(judge(Some(at(1000, 0)), false, None), Verdict::Tampered);
        assert_eq!(judge(Some(at(1000, 0)), true, None), Verdict::Tampered);
    }

    #[test]
    fn gone_is_tampered_unless_it_only_lived_during_the_run() {
        assert_eq!(judge(None, false, Some(at(1000, 0))), Verdict::Tampered);
        assert_eq!(judge(None, false, None), Verdict::Tampered);
        assert_eq!(judge(None, true, None), Verdict::Transient);
    }

    #[test]
    fn timestamps_before_the_epoch_do_not_panic() {
        assert_eq!(timestamp(-5, 0), UNIX_EPOCH);
        assert_eq!(timestamp(1, -1), UNIX_EPOCH);
        assert_eq!(timestamp(1, 2), at(1, 0) + Duration::from_nanos(2));
    }
}
