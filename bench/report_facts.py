"""The `facts` section of docs/benchmarks.md, from one bench/facts.sh run
(bench/runs/<date>-facts/); bench/report.py calls render().

Only reads what facts.sh measured (facts.env, the driver's JSON per run,
/metrics, the Foreman stand-in's counts, the audit repository's branch and
commit counts, the outbox and audit queue sampled every second, CPU before
and after each run, the perf report); judges each number against its target
and says "missed" plainly when it is.
"""

import json
import os
import re

import report_util
from report_host import family, metrics
from report_util import SUMMARY_HEAD, load_facts, load_json, missed_lines, ms, run_rows, verdict

# Targets (from the issue): uploads accepted and stored per second on 2
# cores, with forwarding and the audit trail keeping up ("keeping up": both
# queues empty again within a few seconds of the load's end).
TARGET_RATE = 500.0
TARGET_DRAIN_S = 5.0
MB = 1e6
FACTS_PATH = "POST /api/v2/hosts/facts"

def read_kv(run, name):
    path = os.path.join(run, name)
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return dict(line.strip().split("=", 1) for line in fh if "=" in line)


def queues(run, name, when):
    """(outbox items, audit queue, audit events) as read on the primary."""
    path = os.path.join(run, f"{name}.queues-{when}.txt")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return [int(x) for x in fh.read().split()]


def standin(run, name, when):
    path = os.path.join(run, f"{name}.standin-{when}.json")
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def windows(run):
    out = {}
    with open(os.path.join(run, "windows.txt")) as fh:
        for line in fh:
            name, start, end = line.split()
            out[name] = (float(start), float(end))
    return out


def samples(run, name):
    path = os.path.join(run, f"{name}.samples.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def outcome_counts(values, prefix="pvc_bridge_uploads_total{"):
    out = {}
    for k, v in values.items():
        if k.startswith(prefix):
            m = re.search(r'outcome="(\w+)"', k)
            out[m.group(1)] = out.get(m.group(1), 0) + v
    return out


def forward_counts(values):
    out = {}
    for k, v in values.items():
        if k.startswith("pvc_bridge_forward_total{") and 'kind="facts"' in k:
            mode = re.search(r'mode="(\w+)"', k).group(1)
            outcome = re.search(r'outcome="(\w+)"', k).group(1)
            out[f"{mode} {outcome}"] = out.get(f"{mode} {outcome}", 0) + v
    return out


def delta(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b) if b.get(k, 0) - a.get(k, 0)}


def one_run(run, name, f, win):
    """Everything measured about one driver run."""
    d = load_json(run, name)
    r = {"name": name, "driver": d, "rate": d["accepted_per_s"] or 0.0, "pct": d["latency_ms"],
         "service": d["service_time_ms"]}
    before, after = metrics(run, name, "before"), metrics(run, name, "after")
    drained = os.path.exists(os.path.join(run, f"{name}.metrics-drained.txt"))
    end = metrics(run, name, "drained") if drained else after
    r["outcomes"] = delta(outcome_counts(before), outcome_counts(after))
    r["forward"] = delta(forward_counts(before), forward_counts(end))
    s0, s1 = standin(run, name, "before"), standin(run, name, "drained" if drained else "after")
    r["foreman_posts"] = s1.get("paths", {}).get(FACTS_PATH, 0) - s0.get("paths", {}).get(FACTS_PATH, 0)
    g0, g1 = read_kv(run, f"{name}.git-before.txt"), read_kv(run, f"{name}.git-{'drained' if drained else 'after'}.txt")
    r["commits"] = int(g1.get("commits", 0)) - int(g0.get("commits", 0))
    r["branches"] = int(g1.get("branches", 0))
    r["changes"] = int(r["outcomes"].get("new", 0) + r["outcomes"].get("changed", 0))
    r["queues_after"] = queues(run, name, "after")
    r["queues_drained"] = queues(run, name, "drained")
    r["dead"] = family(end, "pvc_bridge_outbox_dead_items")
    drain = f.get(f"{name}_drain_s")
    try:
        r["drain_s"] = float(drain) if drain is not None else None
    except ValueError:
        r["drain_s"] = float("inf")
        r["drain_text"] = drain
    # Foreman's load: facts POSTs per second at most (stand-in's clock).
    w = win[name]
    per = s1.get("per_second", {}).get(FACTS_PATH, {})
    per0 = s0.get("per_second", {}).get(FACTS_PATH, {})
    secs = {int(k): v - per0.get(k, 0) for k, v in per.items() if int(k) >= int(w[0])}
    r["foreman_peak_per_s"] = max(secs.values()) if secs else 0
    # Sampled every second during the run and the drain.
    ss = samples(run, name)
    during = [s for s in ss if w[0] <= s["t"] <= w[1] and "outbox" in s]
    r["samples"] = len(during)
    for key in ("outbox", "outbox_oldest_s", "audit_queue", "audit_oldest_s"):
        r[f"max_{key}"] = max((s[key] for s in during), default=None)
    # CPU seconds during the run, by process group.
    c0, c1 = load_json(run, f"{name}.cpu-before"), load_json(run, f"{name}.cpu-after")
    cpu = {k: c1[k] - c0[k] for k in c0}
    cpu["driver"] = d.get("driver_cpu_s", 0.0)
    known = sum(cpu[k] for k in ("bridge", "bridge_children", "primary", "replica", "standin", "driver"))
    # The driver builds its templates before the first upload: not the run's.
    cpu["machine"] = max(0.0, cpu["machine"] - d.get("templates_build_cpu_s", 0.0))
    cpu["others"] = max(0.0, cpu["machine"] - known)
    r["cpu"] = cpu
    r["elapsed"] = d["elapsed_s"]
    return r


def median(runs):
    return sorted(runs, key=lambda r: r["rate"])[(len(runs) - 1) // 2]


def cpu_text(r):
    c = r["cpu"]
    return " / ".join(f"{c[k]:.1f}" for k in ("bridge", "bridge_children", "primary", "replica", "standin",
                                              "driver", "others")) + " s"


def per_upload_ms(r, key):
    n = r["driver"]["accepted_2xx"]
    return 1000.0 * r["cpu"][key] / n if n else 0.0


def outcomes_text(r):
    o = r["driver"]["outcomes"]
    return ", ".join(f"{k} {v:,}" for k, v in o.items())


def render(run):
    """(markdown section, terminal summary) of one facts.sh run."""
    f = load_facts(run)
    win = windows(run)
    repeats = int(f["param_REPEATS"])
    rate = float(f["param_RATE"])
    conns, duration = f["param_CONNS"], f["param_DURATION"]
    full_max = [one_run(run, f"full-max-{i}", f, win) for i in range(1, repeats + 1)]
    base_max = [one_run(run, f"base-max-{i}", f, win) for i in range(1, repeats + 1)]
    fm, bm = median(full_max), median(base_max)
    full_rate, base_rate = one_run(run, "full-rate", f, win), one_run(run, "base-rate", f, win)
    warm = one_run(run, "warmup", f, win)
    full_runs = [warm] + full_max + [full_rate]
    measured = full_max + [full_rate]   # the 10%-change load: forwarding must keep up with it
    forward_rate = float(f["param_FORWARD_RATE"])
    git_final = read_kv(run, "git-final.txt")

    scheduled = int(rate * float(f["param_RATE_DURATION"]))
    fr = full_rate["driver"]
    rate_ok = (fr["accepted_2xx"] == scheduled and fr["errors"] == 0
               and fr["accepted_per_s"] >= 0.98 * rate)
    forward_ok = all(r["drain_s"] is not None and r["drain_s"] <= TARGET_DRAIN_S and r["dead"] == 0
                     and r["foreman_posts"] <= r["changes"] for r in measured)
    audit_ok = all(r["commits"] == r["changes"] for r in full_runs)
    met = {"max": fm["rate"] >= TARGET_RATE, "rate": rate_ok, "forward": forward_ok, "audit": audit_ok}

    lines = []
    w = lines.append
    w("## Fact uploads: `POST /facts/<certname>`, forwarding and the audit trail")
    w("")
    w(f"From `bench/facts.sh`; raw results in `{f['run_dir']}/` (driver JSON per run, `/metrics`, the Foreman "
      "stand-in's counts, the audit repository's counts, the queues sampled every second, CPU, bridge logs).")
    w("")
    lines += run_rows(f, "`make bench-facts` (or `make bench`, after `/host`)")
    w("| PostgreSQL durability | `pvc-pg` runs both servers with `fsync`, `synchronous_commit` and "
      "`full_page_writes` off: no WAL flush is waited for at commit, so a production primary's commit latency "
      "is not in these numbers |")
    w(f"| bridge | release build, workers {f['bridge_workers']}, writes to the primary; "
      f"`PVC_FOREMAN__URL` = the stand-in, `PVC_FORWARD__RATE_PER_SEC={f['param_FORWARD_RATE']}` "
      "(other `forward.*` at their defaults: concurrency 4, sync_concurrency 4), `PVC_AUDIT__REPO` = a fresh "
      "bare repository (audit defaults: a round every 1 s, ≤ 1,000 events), `PVC_WRITES__SPOOL_DIR` set, "
      "`PVC_LOG__FORMAT=json`; every other key at its default (volatile and ENC fact lists included) |")
    w("| baseline | the same bridge restarted on the same database with `PVC_FORWARD__ENABLED=false` and no "
      "`PVC_AUDIT__REPO`: uploads still queue for Foreman and the audit trail in the same transaction (the "
      "same SQL), but nothing sends or commits them |")
    w(f"| Foreman | `bench/foreman_standin.py` (Python, threaded): answers the upload APIs 201 after "
      f"{f['param_FOREMAN_DELAY_MS']} ms, counts every request per path and second |")
    w("| load generator | `bench/facts_drive.py` (Python asyncio, HTTP/1.1 keep-alive), on the same 2 cores; "
      "its CPU is in the tables |")
    w(f"| hosts | {int(f['certnames']):,} certnames: the fixture's 40 hosts and {int(f['param_HOSTS']):,} generated "
      f"ones (`pvc_fleet_generate`), all known to Foreman's `hosts` table, so real changes go through the "
      "outbox, not during the upload |")
    w(f"| bodies | generated facter 4 fact sets, one per host ({f['sample_facts']} top-level facts, "
      f"{int(f['sample_bytes']):,} bytes for the first host; mean upload {fm['driver']['body_bytes_mean']:,.0f} "
      "bytes): networking with 9–13 interfaces, 14 mountpoints, partitions, disks, processors, os, memory, "
      "ssh keys, dmi, ruby, identity, ec2 metadata, package and service facts, legacy facts. Every upload "
      "changes the volatile facts (system_uptime, load_averages, memory and mountpoint use); "
      f"{float(f['param_CHANGE_SHARE']):.0%} also carry a real change: a package version or the size of "
      f"`/data` (queued for Foreman), for {float(f['param_ENC_SHARE']):.0%} of those an interface address "
      f"(`networking` is an ENC fact: forwarded during the upload). {float(f['param_FOREMAN_SHARE']):.0%} of "
      "uploads go to `POST /api/v2/hosts/facts` with the stock ENC script's payload, the rest to "
      "`POST /facts/<certname>` |")
    w("")
    w("### Summary")
    w("")
    lines += SUMMARY_HEAD[2:]
    w(f"| accepted and stored uploads/s, closed loop ({conns} connections, {duration} s; median of {repeats}) | "
      f"{fm['rate']:,.0f}/s | {bm['rate']:,.0f}/s | {fm['rate'] / bm['rate']:.0%} | ≥ {TARGET_RATE:,.0f}/s | "
      f"{verdict(met['max'])} |")
    w(f"| open loop at {rate:,.0f} uploads/s for {f['param_RATE_DURATION']} s: accepted / scheduled, "
      f"latency p99 from the intended send | {fr['accepted_2xx']:,} / {scheduled:,}, p99 "
      f"{ms(full_rate['pct']['p99'], 1)} | {base_rate['driver']['accepted_2xx']:,}, p99 "
      f"{ms(base_rate['pct']['p99'], 1)} | {full_rate['pct']['p99'] / max(base_rate['pct']['p99'], 1e-9):.1f}× | "
      f"all {rate:,.0f}/s accepted | {verdict(met['rate'])} |")
    worst_drain = max(measured, key=lambda r: r["drain_s"] if r["drain_s"] is not None else float("inf"))
    changes = sum(r["changes"] for r in full_runs)
    posts = sum(r["foreman_posts"] for r in full_runs)
    commits = sum(r["commits"] for r in full_runs)
    w(f"| forwarding keeps up: outbox empty after the load (slowest of the {len(measured)} measured runs; "
      f"oldest item during the open-loop run); real changes → facts POSTs Foreman got (all runs) | "
      f"{drain_text(worst_drain)} ({full_rate['max_outbox_oldest_s'] or 0:.1f} s); {changes:,} → {posts:,} "
      f"({changes - posts:,} coalesced) | – | – | empty within {TARGET_DRAIN_S:g} s, nothing dead, none sent twice "
      f"| {verdict(met['forward'])} |")
    w(f"| audit trail keeps up: commits per real change (all runs); audit queue empty after the load | "
      f"{commits:,} commits for {changes:,} changes; lag ≤ {max_of(full_runs, 'max_audit_oldest_s'):.1f} s "
      f"during the runs | – | – | one commit per change, queue empty within {TARGET_DRAIN_S:g} s | "
      f"{verdict(met['audit'])} |")
    w(f"| warm-up: every host's first facts (`new`, all {warm['changes']:,} for Foreman), closed loop "
      f"{conns} connections; then the outbox drained at the configured {forward_rate:g}/s | "
      f"{warm['rate']:,.0f}/s, p50 {ms(warm['pct']['p50'], 1)}, p99 {ms(warm['pct']['p99'], 1)}; empty "
      f"{drain_text(warm)} after, Foreman ≤ {warm['foreman_peak_per_s']}/s | – | – | (none) | – |")
    w("")
    full_bar, base_bar = ("with forwarding and audit", "measured"), ("baseline: both off", "baseline")
    w(report_util.panels("facts", "Fact uploads: the full bridge against forwarding and audit off, same run", [
        (f"accepted uploads/s, closed loop ({conns} conns)", "uploads/s",
         [(*full_bar, fm["rate"]), (*base_bar, bm["rate"])]),
        (f"latency p50 at {rate:g}/s", "ms", [(*full_bar, full_rate["pct"]["p50"]), (*base_bar, base_rate["pct"]["p50"])]),
        (f"latency p99 at {rate:g}/s", "ms", [(*full_bar, full_rate["pct"]["p99"]), (*base_bar, base_rate["pct"]["p99"])]),
    ]))
    w("")
    w("### Throughput (closed loop)")
    w("")
    w(f"`facts_drive.py run --closed --concurrency {conns} --duration {duration}`: each connection sends the next "
      "upload as soon as the previous one is answered. The full bridge's runs come first, then the baseline's "
      "(same seeds: the same sequence of uploads). CPU seconds during each run: the bridge / git (the "
      "bridge's exited children: the audit writer's `git fast-import` and `cat-file`) / PostgreSQL primary / "
      "replica (all backends) / the stand-in / the driver / every other process on the machine.")
    w("")
    w("| run | accepted/s | p50 | p99 | outcomes | answered `foreman` | CPU | outbox empty after |")
    w("|---|---:|---:|---:|---|---|---|---:|")
    for r in full_max + base_max:
        fo = ", ".join(f"{k} {v:,}" for k, v in r["driver"]["foreman"].items())
        w(f"| `{r['name']}` | {r['rate']:,.0f} | {ms(r['pct']['p50'], 1)} | {ms(r['pct']['p99'], 1)} | "
          f"{outcomes_text(r)} | {fo} | {cpu_text(r)} | {drain_text(r)} |")
    w("")
    cores = 2.0
    w(f"CPU per accepted upload in the median runs (ms; {cores:g} cores give {cores * 1000:,.0f} ms per second):")
    w("")
    w("| | bridge | git | primary | replica | stand-in | driver | others | machine busy |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in (("full", fm), ("baseline", bm)):
        w(f"| {label} (`{r['name']}`) | " + " | ".join(
            f"{per_upload_ms(r, k):.2f}" for k in ("bridge", "bridge_children", "primary", "replica", "standin",
                                                  "driver", "others", "machine")) + " |")
    w("")
    sut = lambda r: sum(per_upload_ms(r, k) for k in ("bridge", "bridge_children", "primary", "replica"))  # noqa: E731
    w(f"The system under test (the bridge, git, both PostgreSQL servers) used **{sut(fm):.2f} ms** of CPU per "
      f"upload with forwarding and the audit trail, {sut(bm):.2f} ms without: on its own, 2 cores would carry "
      f"at most ≈ {cores * 1000 / sut(fm):,.0f} and ≈ {cores * 1000 / sut(bm):,.0f} uploads/s (here the driver "
      "and the stand-in take their share too). Forwarding and the audit trail cost "
      f"{per_upload_ms(fm, 'bridge') - per_upload_ms(bm, 'bridge'):+.2f} ms in the bridge (reading changed facts "
      f"back, posting them, the audit rounds), {per_upload_ms(fm, 'bridge_children'):+.2f} ms in git and "
      f"{per_upload_ms(fm, 'primary') - per_upload_ms(bm, 'primary'):+.2f} ms in the primary per upload; "
      "storing itself is the rest (see the profile below for what inside).")
    w("")
    w("### Fixed rate (open loop)")
    w("")
    w(f"`facts_drive.py run --rate {rate:g} --duration {f['param_RATE_DURATION']}`: upload i is due at "
      "t0 + i/rate whatever happened to the earlier ones; latency counts from that intended send time (no "
      "coordinated omission), service time from the actual send. Outbox and audit queue: read on the primary "
      "every second during the run.")
    w("")
    w("| bridge | accepted / scheduled | achieved/s | p50 | p90 | p99 | p99.9 | max | service p99 | "
      "driver lag max | outbox max (oldest) | audit queue max (oldest) | Foreman facts POSTs/s max |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in (("full", full_rate), ("baseline", base_rate)):
        d, p = r["driver"], r["pct"]
        q = (f"{r['max_outbox']:,} ({r['max_outbox_oldest_s']:.1f} s)" if label == "full" and
             r["max_outbox"] is not None else "– (not sent)")
        a = (f"{r['max_audit_queue']:,} ({r['max_audit_oldest_s']:.1f} s)" if label == "full" and
             r["max_audit_queue"] is not None else "– (not written)")
        w(f"| {label} | {d['accepted_2xx']:,} / {scheduled:,} | {d['accepted_per_s']:,.0f} | {ms(p['p50'], 1)} | "
          f"{ms(p['p90'], 1)} | {ms(p['p99'], 1)} | {ms(p['p99.9'], 1)} | {ms(p['max'], 1)} | "
          f"{ms(r['service']['p99'], 1)} | {d['max_schedule_lag_ms']:,.0f} ms | {q} | {a} | "
          f"{r['foreman_peak_per_s'] if label == 'full' else '–'} |")
    w("")
    w(f"CPU during the open-loop runs: full {cpu_text(full_rate)}, baseline {cpu_text(base_rate)}; "
      f"machine busy {full_rate['cpu']['machine'] / full_rate['elapsed'] / cores:.0%} and "
      f"{base_rate['cpu']['machine'] / base_rate['elapsed'] / cores:.0%} of {cores:g} cores. The closer the "
      "machine is to busy, the longer uploads queue (the p99 above against the baseline's), and the forwarding "
      "leader, whose queries share the CPU and the primary with the uploads, falls behind (the outbox's oldest "
      "item) and catches up after the load at up to `forward.rate_per_sec`.")
    w("")
    w("### Forwarding and the audit trail")
    w("")
    w("Per run of the full bridge: real changes (outcomes `new` + `changed` from `/metrics`), what the Foreman "
      "stand-in received until the outbox was empty again, the bridge's forward counters, and the audit "
      "repository's commits added. *Coalesced*: changes of a host made while its facts were still waiting "
      "(one request carries the newest).")
    w("")
    w("| run | changes | Foreman facts POSTs | coalesced | forwards (facts) | outbox max / empty after | "
      "audit commits | audit queue max / oldest |")
    w("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in full_runs:
        fw = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r["forward"].items())) or "none"
        mo = "–" if r["max_outbox"] is None else f"{r['max_outbox']:,}"
        w(f"| `{r['name']}` | {r['changes']:,} | {r['foreman_posts']:,} | {r['changes'] - r['foreman_posts']:,} | "
          f"{fw} | {mo} / {drain_text(r)} | {r['commits']:,} | "
          f"{'–' if r['max_audit_queue'] is None else format(r['max_audit_queue'], ',')} / "
          f"{'–' if r['max_audit_oldest_s'] is None else format(r['max_audit_oldest_s'], '.1f') + ' s'} |")
    w("")
    w(f"At the end: {int(git_final.get('branches', 0)):,} host branches and {int(git_final.get('commits', 0)):,} "
      f"commits in the audit repository, {int(f.get('audit_events_total', 0)):,} audit events on the primary "
      f"(every real change of every run, the profiled one included); the bridge's RSS "
      f"{int(f['end_rss_kb']) * 1024 / MB:,.0f} MB (peak {int(f['end_hwm_kb']) * 1024 / MB:,.0f} MB).")
    w("")
    lines += profile_lines(run, f)
    w("### How to read")
    w("")
    w("- Everything runs on one 2-core machine: the driver, the bridge, both PostgreSQL servers, git and the "
      "stand-in share it. The baseline (same machine, same uploads, forwarding and audit off) shows what "
      "forwarding and the audit trail cost; the CPU table shows who spends the machine per upload.")
    w("- `unchanged` uploads (90%) still write: the facts row (~30 KB jsonb, compressed and TOASTed), the "
      "host's check-in. `changed` ones also queue the host for Foreman and an audit event (its stable facts as "
      "jsonb) in the same transaction; the forwarding leader then reads the facts back and posts them, and the "
      "audit leader commits them with `git fast-import`.")
    w("- The warm-up is every host's first upload to this bridge. Foreman knows all these hosts, so their "
      "facts go through the outbox like any change (only a host Foreman does not know, or a change of an "
      "ENC fact, is forwarded during the upload: `forwarded` in the answers, `sync taken` in the counters; "
      "`sync sent_elsewhere`: the leader had taken it first). Every host's first facts at once are the burst the rate "
      "limit exists for: Foreman gets them at `forward.rate_per_sec`, so the outbox takes hosts ÷ rate "
      "seconds to empty, by design; the measured runs' 10% changes stay well below the rate.")
    w("- \"Outbox empty after\" is timed from the end of the run (the last answer) until the outbox and the "
      "audit queue on the primary were both empty (polled every 0.1 s).")
    w("")
    lines += missed_lines(met, {
        "max": lambda: (f"- Closed-loop throughput {fm['rate']:,.0f} uploads/s is below {TARGET_RATE:,.0f}/s "
                        f"(baseline without forwarding and audit: {bm['rate']:,.0f}/s); see the CPU table and "
                        "the profile for where the machine goes."),
        "rate": lambda: (f"- At {rate:,.0f}/s open loop {fr['accepted_2xx']:,} of {scheduled:,} uploads were "
                         f"accepted ({fr['accepted_per_s']:,.0f}/s achieved, {fr['errors']:,} errors)."),
        "forward": lambda: (f"- Forwarding did not keep up: slowest drain {drain_text(worst_drain)} "
                            f"(`{worst_drain['name']}`); dead items "
                            f"{max(r['dead'] for r in full_runs):,.0f}; POSTs {posts:,} for {changes:,} changes."),
        "audit": lambda: (f"- Audit commits {commits:,} for {changes:,} real changes: "
                          + ", ".join(f"`{r['name']}` {r['commits']:,}/{r['changes']:,}" for r in full_runs
                                      if r["commits"] != r["changes"]) + "."),
    })
    text = "\n".join(lines) + "\n"
    summary = report_util.between(text, "### Summary", "### Throughput")
    return text, summary


def max_of(runs, key):
    return max((r[key] for r in runs if r[key] is not None), default=0.0)


def drain_text(r):
    if r.get("drain_text"):
        return r["drain_text"]
    return "–" if r["drain_s"] is None else f"{r['drain_s']:.1f} s"


def perf_rows(run, name):
    """One `perf report --stdio --sort comm,<key>` file: (samples, [(%, "comm  key")...])."""
    path = os.path.join(run, name)
    if not os.path.exists(path):
        return 0, []
    samples_n, out = 0, []
    with open(path) as fh:
        for line in fh:
            m = re.match(r"^# Samples: (\d+)([KM]?)", line)
            if m:
                samples_n = int(m.group(1)) * {"": 1, "K": 1000, "M": 1000000}[m.group(2)]
            m = re.match(r"^\s+([\d.]+)%\s+(.*?)\s*$", line)
            if m:
                cols = re.split(r"\s{2,}", m.group(2))
                out.append((float(m.group(1)), " ".join(cols[:2])))
    return samples_n, out


# Process names (perf's comm) of each group in the profile.
GROUPS = (("bridge", re.compile(r"^(actix|tokio|pvc-bridge)")), ("PostgreSQL", re.compile(r"^postgres")),
          ("git (audit)", re.compile(r"^git")), ("Python (driver, stand-in, sampler)", re.compile(r"^python")),
          ("idle", re.compile(r"^swapper")))
ALLOCATOR = re.compile(r"\] (_int_malloc|malloc|_int_free|cfree\S*|free|realloc|_int_realloc|unlink_chunk\S*|"
                       r"malloc_consolidate|__libc_\w*alloc\w*|sysmalloc|_int_memalign)$")


def group_of(comm):
    for name, pattern in GROUPS:
        if pattern.search(comm):
            return name
    return "other processes"


def profile_lines(run, f):
    """The system-wide profile during one more closed-loop run: the
    machine's samples by process group, then each big group's top symbols."""
    samples_n, by_dso = perf_rows(run, "profile-comm-dso.txt")
    if not by_dso:
        return []
    _, symbols = perf_rows(run, "profile-symbols.txt")
    groups = {}
    for p, s in by_dso:
        g = group_of(s.split(" ", 1)[0])
        groups[g] = groups.get(g, 0.0) + p
    lines = [f"### Profile (`perf record -a -F 499` during one more closed-loop run of "
             f"{f.get('param_PROFILE_DURATION', '?')} s, full bridge; not a measured run)", "",
             f"{samples_n:,} samples over both cores. By process group (rows of 0.5% and more):", "",
             "| group | share of the machine |", "|---|---:|"]
    for g, p in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {g} | {p:.1f}% |")
    lines.append("")
    for g in ("bridge", "PostgreSQL"):
        rows = [(p, s.split(" ", 1)[1]) for p, s in symbols if group_of(s.split(" ", 1)[0]) == g and " " in s]
        total = groups.get(g, 0.0)
        if not rows or not total:
            continue
        alloc = sum(p for p, sym in rows if ALLOCATOR.search(sym))
        lines.append(f"**{g}**, top symbols by self time (share of the {g} group's samples)"
                     + (f"; the allocator (malloc, free and their helpers) takes **{alloc / total:.0%}** of it"
                        if g == "bridge" else "") + ":")
        lines += ["", "| self | symbol |", "|---:|---|"]
        for p, sym in rows[:14]:
            sym = sym.replace("|", "\\|")
            lines.append(f"| {p / total:.1%} | `{sym[:110]}` |")
        lines.append("")
    return lines
