#!/usr/bin/env python3
"""Where the bridge's threads went off CPU, from `perf script` output of a
`perf record -e sched:sched_switch --call-graph dwarf -k realtime` trace
(bench/host.sh records one around a host directory reload; perf cannot stamp
tracepoints with the wall clock here, so it records CLOCK_MONOTONIC and
passes the offset to the wall clock).

  offcpu.py [--offset SECONDS] SCHED_TXT  ->  JSON on stdout (times: epoch)

Each switch-out event of a bridge thread carries its stack. The time until
the same thread's next switch-out bounds how long it stayed off CPU (it ran
again somewhere in between), so a long gap after a switch-out in a lock
means a long wait for that lock. Printed: every switch-out followed by a gap
of at least --min-gap-ms, with its thread, wall-clock time, state, why the
kernel switched (from the kernel frames) and the first frames of the bridge's
own code and of lock code; and per thread, the events counted.
"""

import argparse
import json
import re
import sys

HEADER = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<tid>\d+)\s+(?P<time>\d+\.\d+):\s+(?P<rest>.*)$")
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(?P<sym>.+?)(?:\+0x[0-9a-f]+)?\s+\((?P<dso>[^)]*)\)\s*$")
# Kernel frames that say why a thread left the CPU, most specific first.
KERNEL_REASONS = (
    ("rwsem_down_write", "kernel rw-semaphore, write (mmap_lock?)"),
    ("rwsem_down_read", "kernel rw-semaphore, read (mmap_lock on a page fault?)"),
    ("futex_wait", "futex wait (a user-space lock or condition)"),
    ("epoll_wait", "epoll wait (idle, waiting for requests)"),
    ("ep_poll", "epoll wait (idle, waiting for requests)"),
    ("do_nanosleep", "sleep"),
    ("exit_to_user_mode", "preempted"),
    ("irqentry_exit", "preempted"),
)
LOCK_FRAME = re.compile(r"contended|futex::|parking_lot|lock_slow|RwLock|Mutex", re.I)


def events(lines):
    """(comm, tid, time, state, frames) for every switch-out in the text."""
    current = None
    for line in lines:
        m = HEADER.match(line)
        if m and "sched_switch" in m.group("rest"):
            if current:
                yield current
            state = re.search(r"prev_state=(\S+)", m.group("rest"))
            current = (m.group("comm"), int(m.group("tid")), float(m.group("time")),
                       state.group(1) if state else "?", [])
            continue
        f = FRAME.match(line)
        if f and current:
            current[4].append((f.group("sym"), f.group("dso")))
    if current:
        yield current


def describe(state, frames):
    kernel = [s for s, d in frames if "kernel" in d]
    reason = next((label for key, label in KERNEL_REASONS if any(key in s for s in kernel)), None)
    if reason is None:
        reason = "preempted" if state.startswith("R") else "other"
    user = [s for s, d in frames if "kernel" not in d]
    locks = [s for s in user if LOCK_FRAME.search(s)][:2]
    own = [s for s in user if "pvc_bridge::" in s][:3]
    return reason, locks, own


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("sched_txt")
    parser.add_argument("--min-gap-ms", type=float, default=10.0)
    parser.add_argument("--offset", type=float, default=0.0, help="added to every time")
    args = parser.parse_args()
    with open(args.sched_txt, errors="replace") as fh:
        evs = sorted(((c, tid, t + args.offset, st, fr) for c, tid, t, st, fr in events(fh)),
                     key=lambda e: (e[1], e[2]))
    waits, threads = [], {}
    for i, (comm, tid, t, state, frames) in enumerate(evs):
        threads.setdefault(f"{comm} ({tid})", 0)
        threads[f"{comm} ({tid})"] += 1
        nxt = evs[i + 1] if i + 1 < len(evs) and evs[i + 1][1] == tid else None
        if nxt is None:
            continue
        gap = (nxt[2] - t) * 1000.0
        if gap >= args.min_gap_ms:
            reason, locks, own = describe(state, frames)
            waits.append({"thread": comm, "tid": tid, "time": t, "gap_ms": gap, "state": state,
                          "reason": reason, "lock_frames": locks, "bridge_frames": own})
    json.dump({"events": len(evs), "threads": threads, "waits": waits,
               "first": evs[0][2] if evs else None, "last": max(e[2] for e in evs) if evs else None},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
