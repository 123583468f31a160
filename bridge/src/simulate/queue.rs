//! The event queue: a calendar (bucket) queue in virtual milliseconds.
//!
//! 100K hosts polling every minute make ~1,700 events per virtual second;
//! a single binary heap of that size costs a log factor on every event, a
//! calendar of 64 ms buckets costs a small heap per bucket instead. Events
//! beyond the calendar's horizon (~9 min: polls fit, half-hourly daemon and
//! cron timers do not) wait in an overflow heap. The horizon is short
//! because every bucket keeps the allocation of its busiest moment. Ties
//! pop in insertion order, so a run is a pure function of its inputs.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

const SHIFT: u32 = 6; // 64 ms buckets
const SLOTS: usize = 1 << 13; // ~9 min horizon

#[derive(Debug, Clone, Copy)]
struct Entry<T> {
    at: i64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Min-queue of `(time ms, item)`, FIFO among equal times.
pub struct Calendar<T> {
    ring: Vec<Vec<Reverse<Entry<T>>>>,
    ring_len: usize,
    /// Absolute bucket being drained.
    cur: i64,
    current: BinaryHeap<Reverse<Entry<T>>>,
    overflow: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
}

impl<T: Copy> Calendar<T> {
    /// An empty queue whose first event is at or after `start` (ms).
    pub fn new(start: i64) -> Calendar<T> {
        Calendar {
            ring: (0..SLOTS).map(|_| Vec::new()).collect(),
            ring_len: 0,
            cur: start >> SHIFT,
            current: BinaryHeap::new(),
            overflow: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.ring_len + self.current.len() + self.overflow.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `item` at `at` ms (a time in the past pops next).
    pub fn push(&mut self, at: i64, item: T) {
        let entry = Reverse(Entry {
            at,
            seq: self.seq,
            item,
        });
        self.seq += 1;
        let bucket = at >> SHIFT;
        if bucket <= self.cur {
            self.current.push(entry);
        } else if bucket < self.cur + SLOTS as i64 {
            self.ring[bucket as usize & (SLOTS - 1)].push(entry);
            self.ring_len += 1;
        } else {
            self.overflow.push(entry);
        }
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(i64, T)> {
        loop {
            if let Some(Reverse(entry)) = self.current.pop() {
                return Some((entry.at, entry.item));
            }
            if self.ring_len == 0 {
                // Nothing within the horizon: jump to the overflow's first.
                let Reverse(first) = self.overflow.peek()?;
                self.cur = self.cur.max((first.at >> SHIFT) - 1);
            }
            self.cur += 1;
            let slot = self.cur as usize & (SLOTS - 1);
            // Reuse allocations: the drained heap's buffer takes the slot.
            let mut next = std::mem::take(&mut self.current).into_vec();
            std::mem::swap(&mut next, &mut self.ring[slot]);
            self.ring_len -= next.len();
            self.current = BinaryHeap::from(next);
            while let Some(Reverse(first)) = self.overflow.peek() {
                if first.at >> SHIFT > self.cur {
                    break;
                }
                let entry = self.overflow.pop().expect("peeked");
                self.current.push(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::rng::Rng;

    #[test]
    fn pops_in_time_order_and_fifo_among_ties() {
        let mut queue = Calendar::new(0);
        let mut rng = Rng::new(5, 0);
        let mut pushed = Vec::new();
        for i in 0..20_000u32 {
            // Spread over ~3 h so that the overflow heap is used too.
            let at = rng.below(3 * 3_600_000) as i64;
            let at = if i % 7 == 0 { at - at % 1000 } else { at };
            queue.push(at, i);
            pushed.push((at, i));
        }
        pushed.sort(); // by time, then by insertion (i grows with insertion)
        let mut popped = Vec::new();
        while let Some(event) = queue.pop() {
            popped.push(event);
        }
        assert_eq!(popped, pushed);
        assert!(queue.is_empty());
    }

    #[test]
    fn events_pushed_while_draining_keep_the_order() {
        let mut queue = Calendar::new(1_000);
        queue.push(1_000, 1u32);
        queue.push(5_000_000, 4); // beyond the horizon
        queue.push(1_030, 3);
        let (at, item) = queue.pop().unwrap();
        assert_eq!((at, item), (1_000, 1));
        queue.push(1_000, 2); // "at once", same instant
        assert_eq!(queue.pop(), Some((1_000, 2)));
        assert_eq!(queue.pop(), Some((1_030, 3)));
        queue.push(4_000_000, 5);
        assert_eq!(queue.pop(), Some((4_000_000, 5)));
        assert_eq!(queue.pop(), Some((5_000_000, 4)));
        assert_eq!(queue.pop(), None);
    }
}
