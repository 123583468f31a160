#!/usr/bin/env python3
"""CPU seconds (user + system) used so far by the bridge and by a PostgreSQL
server, so enc.sh can say which of the two a phase kept busy.

  cpu.py BRIDGE_PID POSTMASTER_PID   ->  {"bridge": 12.3, "postgres": 45.6, "machine": 78.9}

"postgres" is the postmaster plus every process whose parent it is (the
backends serving the bridge's pool, the startup/walreceiver processes), plus
the CPU of children that already exited (cutime/cstime of the postmaster).
"machine" is every core's busy time (not idle, not waiting for I/O), so what
other processes took meanwhile shows too.
"""

import json
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: split after its closing ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, utime + stime, cutime + cstime


def machine_busy():
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return sum(ticks[:8]) - ticks[3] - ticks[4]


def main():
    bridge, postmaster = int(sys.argv[1]), int(sys.argv[2])
    _, bridge_ticks, _ = stat(bridge)
    _, pm_ticks, pm_children = stat(postmaster)
    pg_ticks = pm_ticks + pm_children
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, ticks, _ = stat(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            continue
        if ppid == postmaster:
            pg_ticks += ticks
    json.dump({"bridge": bridge_ticks / TICK, "postgres": pg_ticks / TICK,
               "machine": machine_busy() / TICK}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
