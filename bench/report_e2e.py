"""The `e2e` section of docs/benchmarks.md, from one bench/e2e.sh run: the
lines the real-Puppet suite printed (tests/tests/puppet.rs)."""

import os
import re

from report_util import load_facts, panels

# A stock agent's runinterval (Puppet's default: 30 minutes): a tampered
# file stays so until the next run, half of it on average.
RUNINTERVAL_S = 1800
TARGET_S = 5.0


def grab(pattern, text, cast=float):
    m = re.search(pattern, text, re.M)
    return cast(m.group(1)) if m else None


def render(run):
    f = load_facts(run)
    with open(os.path.join(run, "suite.log")) as fh:
        log = fh.read()
    restore = {
        "full": grab(r"^tamper-to-restore: ([\d.]+) s \(full run", log),
        "cached_catalog": grab(r"^tamper-to-restore: ([\d.]+) s \(cached-catalog run", log),
    }
    run_line = {
        mode: re.search(rf"^\s+{mode} run: started ([\d.]+) s after the tamper, took ([\d.]+) s", log, re.M)
        for mode in restore
    }
    poll = grab(r"polls every (\d+) s", log, int)
    compile_line = re.search(
        r"compile load: at most (\d+) catalog compiles holding a JRuby, (\d+) holding or waiting, "
        r"(\d+) borrows of any kind; (\d+) samples with a compile in flight; average wait for a JRuby "
        r"at most (\d+) ms", log)
    budget_line = re.search(r"bridge budget: (\d+) JRubies .*?target ([\d.]+) busy .*?measured utilisation "
                            r"([\d.]+), run cost ([\d.]+) JRuby-s", log)
    samples = grab(r"status API: (\d+) samples", log, int)
    total = grab(r"^\[puppet e2e\s+([\d.]+) s\] all phases passed", log)

    lines = []
    w = lines.append
    w("## Real Puppet end to end: a tampered file restored, and the compile load")
    w("")
    w(f"From `bench/e2e.sh` (the suite `tests/tests/puppet.rs`, run once); its full output in "
      f"`{f['run_dir']}/suite.log`.")
    w("")
    dirty = " ".join(p for p in f.get("dirty", "").split() if not p.startswith("docs/"))
    commit = f"`{f['commit']}`" + (f" plus uncommitted changes to {dirty}" if dirty else "")
    w("### Run")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| date | {f['date']} |")
    w("| command | `make bench-e2e` |")
    w(f"| commit | {commit} |")
    w(f"| machine | {f['nproc']} cores ({f['cpu']}), {f['ram_gib']} GiB RAM, Linux {f['kernel']} |")
    w(f"| load average at start / end | {f['loadavg_start']} / {f['loadavg_end']} |")
    w(f"| Puppet | Debian's puppetserver {f['puppetserver']} (2 JRubies, TLS 1.2) and puppet-agent "
      f"{f['puppet_agent']}, three simulated nodes on this machine under the real `pvc-agent` |")
    w(f"| bridge | debug build in the test process, mutual TLS with the Puppet CA, PostgreSQL {f['postgres']} "
      "primary + streaming replica, capacity from the server's status API |")
    w(f"| whole suite | {total:.0f} s |" if total is not None else "| whole suite | not printed |")
    w("")
    w("### Summary")
    w("")
    w("| measurement | result | baseline: that Puppet run's whole duration | ratio | target | |")
    w("|---|---:|---:|---:|---|---|")
    met_all = True
    for mode, label in (("full", "full run (server capacity)"),
                        ("cached_catalog", "cached-catalog run (no capacity)")):
        secs = restore[mode]
        m = run_line[mode]
        took = float(m.group(2)) if m else None
        ratio = f"{secs / took:.2f}×" if secs and took else ""
        met = secs is not None and secs <= TARGET_S
        met_all &= met
        w(f"| tamper → both files restored, {label}, {poll} s poll interval | "
          f"{secs:.1f} s | {took:.1f} s | {ratio} | ≤ {TARGET_S:.0f} s | **{'met' if met else 'missed'}** |"
          if secs is not None and took is not None else
          f"| tamper → restored, {label} | not printed | | | | |")
    w(f"| the same with a stock agent (`runinterval` {RUNINTERVAL_S // 60} min, no file monitoring) | "
      f"{RUNINTERVAL_S / 2 / 60:.0f} min on average, up to {RUNINTERVAL_S // 60} min | | | | derived, not measured |")
    w("")
    items = []
    for mode, label in (("full", "full run"), ("cached_catalog", "cached-catalog run")):
        m = run_line[mode]
        if restore[mode] is not None and m:
            items.append((f"tamper → restored, {label}", "s",
                          [("pvc-agent: tamper → files restored", "measured", restore[mode]),
                           ("baseline: that Puppet run, start to end", "baseline", float(m.group(2)))]))
    if items:
        w(panels("e2e", "A tampered monitored file, with real Puppet: time to restore, same run", items))
        w("")
    w("The baseline is measured in the same run: the Puppet run that restored the files, from its start to "
      "its end. The files are back before that run ends (it then writes its state and sends its report), so "
      "the ratio can be under 1: nearly all of the time to restore is Puppet's own run.")
    w("")
    for mode in restore:
        m = run_line[mode]
        if m:
            w(f"- {mode.replace('_', ' ')}: pvc-agent's forced run started {float(m.group(1)):.1f} s after the "
              f"tamper (inotify, the agent's debounce, `/host?trigger=file_change`, the grant, Puppet's "
              f"start) and Puppet took {float(m.group(2)):.1f} s.")
    w("")
    w("### Compile load against the budget")
    w("")
    if compile_line and budget_line:
        w("| | |")
        w("|---|---|")
        w(f"| bridge's budget (from the status API) | {budget_line.group(1)} JRubies, target "
          f"{budget_line.group(2)} busy |")
        w(f"| catalog compiles holding a JRuby, at most | {compile_line.group(1)} |")
        w(f"| catalog compiles holding or waiting for one, at most | {compile_line.group(2)} |")
        w(f"| puppetserver's average wait for a JRuby, at most | {compile_line.group(5)} ms |")
        w(f"| measured utilisation / run cost | {budget_line.group(3)} / {budget_line.group(4)} JRuby-s |")
        w(f"| status samples (every 200 ms) / with a compile in flight | {samples} / {compile_line.group(4)} |")
        w("")
        w("The bridge admits runs at a rate (target utilisation × JRubies ÷ run cost), not a count of "
          "concurrent compiles: compiles holding a JRuby never exceeded the pool the bridge budgets with; "
          "one more may briefly wait for a JRuby when runs granted a moment apart overlap.")
    else:
        w("Not printed by this run.")
    w("")
    w("### Targets missed")
    w("")
    w("None." if met_all else "Tamper → restored over 5 s in the row marked missed (a Puppet run of this "
      "machine's load is most of it: see the floor).")
    summary = f"e2e: full {restore['full']} s, cached {restore['cached_catalog']} s"
    return "\n".join(lines) + "\n", summary
