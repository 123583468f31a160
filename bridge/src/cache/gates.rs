//! Gates: after a change at WAL position P is seen in the feed, nothing it
//! affects may be cached again from data older than P. A load notes the
//! position its connection had replayed before its first query; an entry
//! whose dependencies have a gate above that position is not cached but
//! loaded again from a server past the gate (`Db::read_after`). This closes
//! the race of a load that started before an invalidation and would finish
//! after it with old rows. Pure: positions are numbers, time is passed in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::changes::tables::{Dep, Packed};

/// How long a gate is kept: far longer than any load takes, so an entry
/// loaded before the change cannot outlive its gate in flight.
pub const KEEP: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Gates {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every entry: a change that affected everything.
    global: u64,
    by_dep: HashMap<Packed, (u64, Instant)>,
}

impl Gates {
    /// `deps` changed at `position`.
    pub fn raise(&self, deps: &[Dep], position: u64, now: Instant) {
        let mut inner = self.lock();
        for dep in deps {
            let gate = inner.by_dep.entry(dep.packed()).or_insert((0, now));
            if gate.0 < position {
                *gate = (position, now);
            }
        }
    }

    /// Everything changed at `position`.
    pub fn raise_all(&self, position: u64) {
        let mut inner = self.lock();
        inner.global = inner.global.max(position);
    }

    /// The position a load of an entry built from `deps` must have
    /// replayed (0: any).
    pub fn required<'a>(&self, deps: impl IntoIterator<Item = &'a Packed>) -> u64 {
        let inner = self.lock();
        deps.into_iter()
            .filter_map(|dep| inner.by_dep.get(dep).map(|(position, _)| *position))
            .fold(inner.global, u64::max)
    }

    /// The position every load must have replayed.
    pub fn global(&self) -> u64 {
        self.lock().global
    }

    /// Drops gates older than [`KEEP`].
    pub fn prune(&self, now: Instant) {
        self.lock()
            .by_dep
            .retain(|_, (_, raised)| now.duration_since(*raised) < KEEP);
    }

    pub fn len(&self) -> usize {
        self.lock().by_dep.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_must_be_past_the_newest_gate_of_its_dependencies() {
        let gates = Gates::default();
        let now = Instant::now();
        assert_eq!(gates.required(&[Dep::Host(1).packed()]), 0);
        gates.raise(&[Dep::Host(1), Dep::Hostgroup(2)], 100, now);
        gates.raise(&[Dep::Hostgroup(2)], 50, now);
        assert_eq!(gates.required(&[Dep::Host(1).packed()]), 100);
        assert_eq!(
            gates.required(&[Dep::Hostgroup(2).packed()]),
            100,
            "gates only rise"
        );
        assert_eq!(gates.required(&[Dep::Host(3).packed()]), 0);
        gates.raise_all(70);
        assert_eq!(gates.required(&[Dep::Host(3).packed()]), 70);
        assert_eq!(
            gates.required(&[Dep::Host(1).packed(), Dep::Host(3).packed()]),
            100
        );
    }

    #[test]
    fn old_gates_are_pruned_but_the_global_one_stays() {
        let gates = Gates::default();
        let start = Instant::now();
        gates.raise(&[Dep::Users], 10, start);
        gates.raise_all(5);
        gates.prune(start + KEEP / 2);
        assert_eq!(gates.len(), 1);
        gates.prune(start + KEEP);
        assert!(gates.is_empty());
        assert_eq!(gates.required(&[Dep::Users.packed()]), 5);
    }
}
