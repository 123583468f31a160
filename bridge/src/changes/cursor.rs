//! Where a reader of `pvc.changes` is, without missing a row committed out
//! of id order. Ids come from a sequence when a row is written, so a
//! transaction that started early can commit a lower id after higher ones
//! were read. A missing id below the highest one read is a *gap*: it is kept
//! open until every transaction that was running when the gap was first
//! seen has ended (a later snapshot's `xmin` is at or past that snapshot's
//! `xmax`); then the id either appeared or never will (rolled back). Pure:
//! the snapshot numbers come from the query.

use std::collections::{BTreeMap, BTreeSet};

/// A reader's transaction snapshot (`pg_current_snapshot()`), as xid8s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Every transaction below it has ended.
    pub xmin: u64,
    /// Every transaction at or above it started after the snapshot.
    pub xmax: u64,
}

/// Open gaps beyond which the cursor gives up and asks for a flush: a feed
/// with that many rows in flight at once is not one to trust row by row.
pub const MAX_GAPS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Cursor {
    /// Every id at or below it has been handled or will never appear.
    horizon: i64,
    /// Ids above `horizon` already handled.
    seen: BTreeSet<i64>,
    /// Missing ids above `horizon`, with the `xmax` of the snapshot that
    /// first missed them.
    gaps: BTreeMap<i64, u64>,
    /// Rows at or below it were committed before this reader started:
    /// marked handled, not acted on (nothing was cached yet), unless a read
    /// found them missing first (in flight at the start).
    quiet_upto: i64,
}

/// What one read of the feed means.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Ids to act on, ascending.
    pub fresh: Vec<i64>,
    /// Too many open gaps: flush everything, then [`Cursor::restart`].
    pub overflow: bool,
}

impl Cursor {
    /// A reader starting now, when the highest id is `newest`: rows above
    /// `newest - window` are read again (marked handled, not acted on) so
    /// that ids below `newest` still in flight are tracked as gaps.
    pub fn starting(newest: i64, window: i64) -> Cursor {
        Cursor {
            horizon: newest.saturating_sub(window).max(0),
            seen: BTreeSet::new(),
            gaps: BTreeMap::new(),
            quiet_upto: newest,
        }
    }

    /// After a flush: start again as if new.
    pub fn restart(&mut self, newest: i64, window: i64) {
        *self = Cursor::starting(newest, window);
    }

    /// Rows with ids above this are the ones to read.
    pub fn read_after(&self) -> i64 {
        self.horizon
    }

    /// Open gaps (for metrics).
    pub fn open_gaps(&self) -> usize {
        self.gaps.len()
    }

    /// Takes the ids a read returned (ascending, all above
    /// [`read_after`](Self::read_after)) under `snapshot`; `complete`:
    /// the read returned every row there was (no LIMIT cut it short), so a
    /// missing id below the highest one is a real gap.
    pub fn observe(&mut self, ids: &[i64], snapshot: Snapshot, complete: bool) -> Step {
        let mut step = Step::default();
        for &id in ids {
            if id <= self.horizon || !self.seen.insert(id) {
                continue;
            }
            // A row from before the start is acted on only if an earlier
            // read missed it (it was in flight then).
            let was_gap = self.gaps.remove(&id).is_some();
            if id > self.quiet_upto || was_gap {
                step.fresh.push(id);
            }
        }
        // Gaps: ids between the horizon and the highest id seen that did not
        // appear. With an incomplete read only up to the last id read.
        let top = match (complete, ids.last()) {
            (_, Some(&last)) => last,
            (true, None) => self.seen.last().copied().unwrap_or(self.horizon),
            (false, None) => self.horizon,
        };
        let top = top.max(self.seen.last().copied().unwrap_or(self.horizon));
        let mut id = self.horizon + 1;
        while id < top {
            if !self.seen.contains(&id) {
                self.gaps.entry(id).or_insert(snapshot.xmax);
                if self.gaps.len() > MAX_GAPS {
                    step.overflow = true;
                    return step;
                }
            }
            id += 1;
        }
        // Gaps whose transactions have all ended are closed.
        self.gaps
            .retain(|_, first_xmax| snapshot.xmin < *first_xmax);
        // The horizon moves up over handled ids and closed gaps.
        while self.seen.first() == Some(&(self.horizon + 1))
            || (self.horizon + 1 < top && !self.gaps.contains_key(&(self.horizon + 1)))
        {
            self.horizon += 1;
            self.seen.remove(&self.horizon);
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(xmin: u64, xmax: u64) -> Snapshot {
        Snapshot { xmin, xmax }
    }

    #[test]
    fn rows_in_order_move_the_horizon() {
        let mut cursor = Cursor::starting(0, 100);
        let step = cursor.observe(&[1, 2, 3], snap(10, 10), true);
        assert_eq!(step.fresh, [1, 2, 3]);
        assert_eq!(cursor.read_after(), 3);
        assert_eq!(cursor.open_gaps(), 0);
        // Read again: nothing new.
        assert!(cursor.observe(&[], snap(10, 10), true).fresh.is_empty());
    }

    #[test]
    fn a_row_committed_late_below_a_newer_one_is_still_seen() {
        let mut cursor = Cursor::starting(0, 100);
        // Id 2 is held by transaction 11, still running at this snapshot.
        let step = cursor.observe(&[1, 3], snap(11, 13), true);
        assert_eq!(step.fresh, [1, 3]);
        assert_eq!(cursor.read_after(), 1, "the horizon waits at the gap");
        assert_eq!(cursor.open_gaps(), 1);
        // Transaction 11 commits: id 2 appears (3 is read again, ignored).
        let step = cursor.observe(&[2, 3], snap(13, 14), true);
        assert_eq!(step.fresh, [2]);
        assert_eq!(cursor.read_after(), 3);
        assert_eq!(cursor.open_gaps(), 0);
    }

    #[test]
    fn a_gap_of_a_rolled_back_transaction_closes_once_older_transactions_ended() {
        let mut cursor = Cursor::starting(0, 100);
        cursor.observe(&[1, 3], snap(11, 13), true);
        // Still possibly running (xmin 12 < 13): stays open.
        cursor.observe(&[3], snap(12, 15), true);
        assert_eq!(cursor.open_gaps(), 1);
        assert_eq!(cursor.read_after(), 1);
        // Every transaction below 13 has ended and 2 never appeared.
        let step = cursor.observe(&[3], snap(13, 15), true);
        assert!(step.fresh.is_empty());
        assert_eq!(cursor.open_gaps(), 0);
        assert_eq!(cursor.read_after(), 3);
    }

    #[test]
    fn rows_from_before_the_start_are_handled_quietly() {
        // Newest id 10 at start, window 5: ids 6..=10 are read again.
        let mut cursor = Cursor::starting(10, 5);
        assert_eq!(cursor.read_after(), 5);
        // 8 is in flight; 9 and 10 were committed before the start.
        let step = cursor.observe(&[6, 7, 9, 10, 11], snap(20, 22), true);
        assert_eq!(step.fresh, [11]);
        // 8 commits later: acted on, although below the start's newest id.
        let step = cursor.observe(&[8, 9, 10, 11], snap(22, 23), true);
        assert_eq!(step.fresh, [8]);
        assert_eq!(cursor.read_after(), 11);
    }

    #[test]
    fn a_start_window_read_in_several_batches_stays_quiet() {
        let mut cursor = Cursor::starting(10, 10);
        assert!(cursor
            .observe(&[1, 2, 3, 4, 5], snap(20, 20), false)
            .fresh
            .is_empty());
        assert!(cursor
            .observe(&[6, 7, 8, 9, 10], snap(20, 20), true)
            .fresh
            .is_empty());
        assert_eq!(cursor.read_after(), 10);
        assert_eq!(cursor.observe(&[11], snap(20, 21), true).fresh, [11]);
    }

    #[test]
    fn an_incomplete_read_opens_no_gap_past_its_last_row() {
        let mut cursor = Cursor::starting(0, 100);
        let step = cursor.observe(&[1, 2], snap(5, 5), false);
        assert_eq!(step.fresh, [1, 2]);
        assert_eq!(cursor.open_gaps(), 0);
        assert_eq!(cursor.read_after(), 2);
    }

    #[test]
    fn too_many_gaps_ask_for_a_flush() {
        let mut cursor = Cursor::starting(0, 100);
        let far = MAX_GAPS as i64 + 10;
        let step = cursor.observe(&[far], snap(1, 2), true);
        assert!(step.overflow);
        cursor.restart(far, 100);
        assert_eq!(cursor.read_after(), far - 100);
    }
}
