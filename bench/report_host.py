"""The `/host` section of docs/benchmarks.md, from one bench/host.sh run
(bench/runs/<date>-host/); bench/report.py calls render().

Only reads what host.sh measured (facts.env, oha JSON and CSV, /metrics and
CPU samples around every run, the bridge's JSON log, the perf report); judges
each number against its target and says "missed" plainly when it is.
"""

import csv
import json
import os
import re
from datetime import datetime

from report_util import (LATENCY_CORRECTION, SUMMARY_HEAD, alternating, between, cpu_delta, load_facts, panels,
                         missed_lines, ms, run_rows, slower, throughput_lines, verdict)

# Targets (from the issue).
TARGET_HOST_RATIO = 0.50    # /host max req/s >= 50 % of /healthz max req/s, same run
TARGET_P99_MS = 5.0         # /host p99 at the fixed open-loop rate
MB = 1e6
# Self-time symbols that mean waiting for or fighting over a lock.
LOCK_SYMBOLS = re.compile(r"futex|lock_contended|parking_lot|RwLock|Mutex|spin_lock|__lll_lock", re.I)


def seconds(duration):
    """oha's duration knob ("10s", "1m", "60") in seconds."""
    m = re.fullmatch(r"([\d.]+)\s*(ms|s|m|h)?", duration.strip())
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value * {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


def metrics(run, name, when):
    """One /metrics snapshot as {series: value}."""
    values = {}
    with open(os.path.join(run, f"{name}.metrics-{when}.txt")) as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return values


def family(values, name):
    """Sum over every label set of a metric."""
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


def run_counts(run, name):
    """What the bridge counted during one run: polls, grants, refusals."""
    a, b = metrics(run, name, "before"), metrics(run, name, "after")
    delta = lambda metric: family(b, metric) - family(a, metric)  # noqa: E731
    refused = {k.split('reason="')[1].rstrip('"}'): v - a.get(k, 0.0)
               for k, v in b.items() if k.startswith("pvc_bridge_grants_refused_total{")}
    return {
        "polls": delta("pvc_bridge_polls_total"),
        "granted": delta("pvc_bridge_runs_granted_total"),
        "refused": {k: v for k, v in refused.items() if v},
        "unknown": delta("pvc_bridge_unknown_host_polls_total"),
        "after": b,
    }


def children_cpu(run, name, when):
    """CPU seconds of the shell's finished children (bash `times`, 2nd line)."""
    path = os.path.join(run, f"{name}.times-{when}.txt")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        line = fh.read().splitlines()[1]
    return sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))


def run_cpu(run, name):
    """CPU seconds during one run: the bridge, each PostgreSQL server, oha,
    and every other process on the machine."""
    bridge = cpu_delta(run, f"{name}.cpu-before", f"{name}.cpu-after")
    primary = cpu_delta(run, f"{name}.cpu-primary-before", f"{name}.cpu-primary-after")
    out = {"bridge": bridge["bridge"], "replica": bridge["postgres"], "primary": primary["postgres"]}
    before, after = children_cpu(run, name, "before"), children_cpu(run, name, "after")
    if before is not None and after is not None and "machine" in bridge:
        out["oha"] = after - before
        out["others"] = max(0.0, bridge["machine"] - sum(out.values()))
    return out


def windows(run):
    """Wall-clock (epoch) start and end of each oha run."""
    out = {}
    with open(os.path.join(run, "windows.txt")) as fh:
        for line in fh:
            name, start, end = line.split()
            out[name] = (float(start), float(end))
    return out


def epoch(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def directory_loads(run):
    """Every host directory load in the bridge's JSON log, in order: end time
    (epoch), its whole duration in the run-decision service (query, resolve,
    scheduler update), and the query and total of the load itself."""
    loads, pending = [], {}
    with open(os.path.join(run, "bridge-host.log")) as fh:
        for line in fh:
            if not line.startswith("{"):
                continue  # malloc_stats() output
            event = json.loads(line)
            fields = event.get("fields", {})
            if fields.get("message") != "host directory loaded":
                continue
            if event.get("target", "").endswith("::runs"):
                loads.append({"end": epoch(event["timestamp"]), "elapsed_ms": fields.get("elapsed_ms"),
                              "hosts": fields.get("hosts"), **pending})
                pending = {}
            else:
                pending = {"query_ms": fields.get("query_ms"), "load_ms": fields.get("total_ms")}
    return loads


def rate_run(run, name, rate, duration_s, window_start, loads):
    """Percentiles of an open-loop oha CSV (latency from the scheduled send
    time), and the requests in flight while a directory load ran."""
    rows = []
    with open(os.path.join(run, f"{name}.csv")) as fh:
        for r in csv.DictReader(fh):
            latency = float(r["request-duration"])
            # Scheduled send = answer time - corrected latency; the answer
            # comes at the actual start + time to first byte.
            due = float(r["request-start"]) + float(r["Response-delay"]) - latency
            rows.append((window_start + due, latency * 1000.0, r["status"]))
    spans = [(l["end"] - (l["elapsed_ms"] or 0) / 1000.0, l["end"]) for l in loads]
    during = [lat for t, lat, _ in rows if any(s <= t + lat / 1000.0 and t <= e for s, e in spans)]
    others = [lat for t, lat, _ in rows if not any(s <= t + lat / 1000.0 and t <= e for s, e in spans)]
    latencies = sorted(lat for _, lat, _ in rows)
    worst = sorted(rows, key=lambda r: -r[1])[: max(1, len(rows) // 100)]
    codes = {}
    for _, _, status in rows:
        codes[status] = codes.get(status, 0) + 1
    return {
        "answered": len(rows),
        "expected": int(rate * duration_s),
        "rps": len(rows) / duration_s,
        "codes": codes,
        "pct": percentiles(latencies),
        "loads": [l for l in loads if any(s == l["end"] - (l["elapsed_ms"] or 0) / 1000.0 for s, _ in spans)],
        "during": percentiles(sorted(during)),
        "others": percentiles(sorted(others)),
        "worst_during": sum(1 for t, lat, _ in worst
                            if any(s <= t + lat / 1000.0 and t <= e for s, e in spans)),
        "worst": len(worst),
    }


def percentiles(values):
    """Nearest-rank percentiles (ms) of a sorted list, with its count."""
    if not values:
        return {"n": 0}
    pick = lambda q: values[max(0, -(-len(values) * q // 1000) - 1)]  # noqa: E731
    return {"n": len(values), "p50": pick(500), "p90": pick(900), "p99": pick(990),
            "p99.9": pick(999), "max": values[-1]}


def perf_rows(run, name):
    """One `perf report --stdio` file: (samples, [(self %, name)...])."""
    path = os.path.join(run, name)
    if not os.path.exists(path):
        return 0, []
    samples, out = 0, []
    with open(path) as fh:
        for line in fh:
            m = re.match(r"^# Samples: (\d+)([KM]?)", line)
            if m:
                samples = int(m.group(1)) * {"": 1, "K": 1000, "M": 1000000}[m.group(2)]
            m = re.match(r"^\s+([\d.]+)%\s+(.*?)\s*$", line)
            if m:
                out.append((float(m.group(1)), re.sub(r"\s{2,}.*$", "", m.group(2))))
    return samples, out


def profile_lines(run, f, rate, conns):
    """The profile subsection: the whole profiled run, then the directory
    reload inside it."""
    samples, symbols = perf_rows(run, "profile-symbols.txt")
    if not symbols:
        return []
    lines = [f"### Profile (`perf record -F 999 -p <bridge>` during `oha -c {conns} -q {rate:g} "
             f"--latency-correction -z {f['param_PROFILE_DURATION']}` on `/host`, after the measured runs)", ""]
    parts = [("the whole run", samples, symbols, perf_rows(run, "profile-dso.txt")[1])]
    if "profile_reload_span" in f:
        start, end = (float(x) for x in f["profile_reload_span"].split(","))
        r_samples, r_symbols = perf_rows(run, "profile-reload-symbols.txt")
        parts.append((f"the directory reload only ({(end - start) * 1000:,.0f} ms: from the start of the load "
                      "to 100 ms after its log line, which comes before the new directory replaces the old one)",
                      r_samples, r_symbols, perf_rows(run, "profile-reload-dso.txt")[1]))
    for label, n, rows, dsos in parts:
        locks = sum(p for p, s in rows if LOCK_SYMBOLS.search(s))
        lines.append(f"**{label.capitalize()}**, {n:,} samples. By shared object: "
                     + ", ".join(f"{s} {p:.1f}%" for p, s in dsos)
                     + f". Lock waits and contention (futex, `lock_contended`, mutex/rwlock, spin locks): "
                     f"**{locks:.1f}%**. Top symbols by self time:")
        lines += ["", "| self | symbol |", "|---:|---|"]
        for p, s in rows[:12]:
            symbol = s.replace("|", "\\|")
            symbol = symbol if len(symbol) <= 100 else symbol[:99] + "…"
            lines.append(f"| {p:.2f}% | `{symbol}` |")
        lines.append("")
    return lines + offcpu_lines(run)


def offcpu_lines(run):
    """The off-CPU trace around one directory reload (bench/offcpu.py)."""
    path = os.path.join(run, "offcpu.json")
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        trace = json.load(fh)
    if not trace["events"]:
        return []
    reloads = [l for l in directory_loads(run) if trace["first"] - 1 <= l["end"] <= trace["last"] + 1]
    lines = [f"**Off CPU around a directory reload**: `perf record -e sched:sched_switch --call-graph dwarf` "
             f"on the bridge for {trace['last'] - trace['first']:.1f} s during the same load, "
             f"{trace['events']:,} switches of {len(trace['threads'])} threads."]
    if reloads:
        r = reloads[0]
        lines[-1] += (f" The reload took {r['elapsed_ms']:,} ms (its load {r.get('load_ms', '–')} ms, of which the "
                      f"query {r.get('query_ms', '–')} ms), logged at 0 ms below; its scheduler update and the swap "
                      "of the directory come last.")
    # The HTTP workers are actix's threads; the main thread runs the
    # background loops (the reload among them) and idles in between.
    workers = [wt for wt in trace["waits"] if wt["thread"].startswith("actix") or wt["lock_frames"]]
    idle = [wt for wt in workers if wt["reason"].startswith("epoll")]
    workers = [wt for wt in workers if not wt["reason"].startswith("epoll")]
    if not workers:
        return lines + ["", "No HTTP worker thread stayed off CPU 10 ms or more except idle in epoll.", ""]
    lines[-1] += (" Every switch of an HTTP worker thread followed by at least 10 ms before that thread's next "
                  f"one (so off CPU that long, at most), except {len(idle)} idle waits in epoll:")
    lines += ["", "| thread | at | off CPU ≤ | state | kernel: why | lock frames | bridge frames |",
              "|---|---:|---:|---|---|---|---|"]
    for wt in sorted(workers, key=lambda x: x["time"])[:30]:
        at = f"{(wt['time'] - reloads[0]['end']) * 1000:+,.0f} ms" if reloads else f"{wt['time']:.3f}"
        frames = lambda fs: "<br>".join(f"`{x[:90]}`" for x in fs) or "–"  # noqa: E731
        thread = wt["thread"].replace("|", "\\|")
        lines.append(f"| {thread} ({wt['tid']}) | {at} | {wt['gap_ms']:,.0f} ms | {wt['state']} | {wt['reason']} | "
                     f"{frames(wt['lock_frames'])} | {frames(wt['bridge_frames'])} |")
    return lines + [""]


def reload_span(run, name):
    """`start,end` (epoch) of the longest directory reload that ended during
    run NAME, for `perf report --time`; nothing when none did."""
    inside = [l for l in load_in_window(directory_loads(run), windows(run)[name]) if l.get("elapsed_ms")]
    if inside:
        longest = max(inside, key=lambda l: l["elapsed_ms"])
        print(f"{longest['end'] - longest['elapsed_ms'] / 1000.0:.6f},{longest['end'] + 0.1:.6f}")


def load_in_window(loads, window):
    return [l for l in loads if window[0] <= l["end"] <= window[1] + 0.5]


def render(run):
    """(markdown section, terminal summary) of one host.sh run."""
    f = load_facts(run)
    conns, duration = f["param_CONNS"], f["param_DURATION"]
    rate, rate_duration = float(f["param_HOST_RATE"]), f["param_RATE_DURATION"]
    repeats = int(f["param_REPEATS"])
    hosts = int(f.get("hosts_big") or f["hosts"])  # runs before grow_fleet named it "hosts"
    win = windows(run)
    loads = directory_loads(run)

    h_all, h_max, p_all, p_max = alternating(run, "host", repeats)
    ratio = p_max["rps"] / h_max["rps"] if h_max["rps"] else 0.0
    counts = {f"{kind}-max-{i}": run_counts(run, f"{kind}-max-{i}")
              for kind in ("healthz", "host") for i in range(1, repeats + 1)}
    for name in ("healthz-rate", "host-rate"):
        counts[name] = run_counts(run, name)
    cpus = {name: run_cpu(run, name) for name in counts}
    rd = seconds(rate_duration)
    h_rate = rate_run(run, "healthz-rate", rate, rd, win["healthz-rate"][0], load_in_window(loads, win["healthz-rate"]))
    p_rate = rate_run(run, "host-rate", rate, rd, win["host-rate"][0], load_in_window(loads, win["host-rate"]))
    after = counts["host-rate"]["after"]
    pool_rate = family(after, "pvc_bridge_pool_run_rate")
    cycle = family(after, "pvc_bridge_pool_cycle_seconds")
    shortage = family(after, "pvc_bridge_pool_shortage")

    first = loads[0] if loads else {}
    later = [l for l in loads[1:] if l.get("elapsed_ms") is not None]

    met = {
        "ratio": ratio >= TARGET_HOST_RATIO,
        "p99": p_rate["pct"].get("p99", 1e9) <= TARGET_P99_MS,
    }

    lines = []
    w = lines.append
    w("## Run decisions: `GET /host?fqdn=<certname>`")
    w("")
    w(f"From `bench/host.sh`; raw results in `{f['run_dir']}/` (oha JSON and CSV, `/metrics` and CPU "
      "before and after every run, the bridge's JSON log, the perf report).")
    w("")
    lines += run_rows(f, "`make bench-host` (or `make bench`, after the ENC)")
    w(f"| bridge | release build, workers {f['bridge_workers']}, reads from the replica, leases on the primary; "
      f"`--config` with {f['param_SERVERS']} static `[[scheduler.servers]]` of {f['param_JRUBIES']} JRubies each "
      "(no status API, so always up at that size); every `scheduler.*` key at its default "
      "(target period 1800 s, run cost 2 s, utilisation 0.8, Foreman's tables checked every 30 s and the "
      "host directory rebuilt when they changed); "
      "`PVC_LOG__FORMAT=json`, `PVC_LOG__LEVEL=info,pvc_bridge::runs=debug` (one line per directory load) |")
    w(f"| load generator | {f['oha']}, on the same 2 cores as the bridge and PostgreSQL |")
    if "param_FOREMAN_EDIT_SECS" in f:
        edit = int(f["param_FOREMAN_EDIT_SECS"])
        w("| Foreman activity | " + (
            f"one parameter saved every {edit} s during the runs (its `updated_at` moved on the primary, as an "
            "edit in Foreman does), so each check finds what the directory reads changed and rebuilds it: "
            "the worst case for polls |" if edit else
            "none: the tables never change, so the directory is rebuilt only every tenth check |"))
    w(f"| fleet | **{hosts:,} hosts** (40 golden + {int(f['param_BIG_FLEET']):,} generated, `tests/fixtures/fleet`) |")
    w(f"| fleet generation | **{f['fleet_gen_s']} s** (`pvc_fleet_generate({int(f['param_BIG_FLEET'])})`, until the "
      f"replica has replayed it); then `ANALYZE` {f['analyze_big_s']} s; `pvc-bridge migrate` {f['migrate_s']} s |")
    w(f"| scheduler during the runs | pool `default`: {pool_rate:,.1f} runs/s admissible "
      f"({f['param_SERVERS']} × {f['param_JRUBIES']} JRubies × 0.8 ÷ 2 s), cycle {cycle:,.0f} s for {hosts:,} hosts"
      f"{' (shortage: the 1800 s target is out of reach, periods stretched evenly)' if shortage else ''} |")
    w("")
    with open(os.path.join(run, "answer-sample.txt")) as fh:
        sample = fh.read().rstrip("\n")
    granted = "granted" if "PVC_RUN='1'" in sample else "not granted"
    w(f"What an agent gets (one poll, {granted}; text, one `KEY='value'` per line, for `eval`):")
    w("")
    w("```sh")
    w(sample)
    w("```")
    w("")
    lines += SUMMARY_HEAD
    w(f"| `/host` max throughput (closed loop, {conns} conns, {duration}, random host of {hosts:,}) | "
      f"{p_max['rps']:,.0f} req/s | `/healthz` {h_max['rps']:,.0f} req/s | {ratio:.0%} | "
      f"≥ {TARGET_HOST_RATIO:.0%} of `/healthz` | {verdict(met['ratio'])} |")
    w(f"| `/host` latency p99 at {rate:,.0f} req/s open loop ({rate_duration}) | {ms(p_rate['pct'].get('p99'), 3)} | "
      f"`/healthz` {ms(h_rate['pct'].get('p99'), 3)} | "
      f"{slower(p_rate['pct'].get('p99'), h_rate['pct'].get('p99'))} | ≤ {TARGET_P99_MS:g} ms | "
      f"{verdict(met['p99'])} |")
    w(f"| `/host` p99.9 / max in the same run (directory reloads: see below) | {ms(p_rate['pct'].get('p99.9'), 1)} / "
      f"{ms(p_rate['pct'].get('max'), 1)} | `/healthz` {ms(h_rate['pct'].get('p99.9'), 1)} / "
      f"{ms(h_rate['pct'].get('max'), 1)} | | — | |")
    w(f"| host directory at start: {hosts:,} hosts in memory | {f['directory_ready_s']} s after start | | | — | |")
    w(f"| bridge RSS with the directory loaded | {int(f['loaded_rss_kb']) * 1024 / MB:,.1f} MB | | | — | |")
    w("")
    w(panels("host", "/host against /healthz, same run", [
        (f"max throughput, closed loop ({conns} conns)", "req/s",
         [("/healthz", "baseline", h_max["rps"]), ("/host", "measured", p_max["rps"])]),
        (f"latency p50 at {rate:g} req/s", "ms",
         [("/healthz", "baseline", h_rate["pct"].get("p50")), ("/host", "measured", p_rate["pct"].get("p50"))]),
        (f"latency p99 at {rate:g} req/s", "ms",
         [("/healthz", "baseline", h_rate["pct"].get("p99")), ("/host", "measured", p_rate["pct"].get("p99"))]),
    ]))
    w("")
    w("### Throughput (closed loop)")
    w("")
    w(f"`oha --no-tui --output-format json -c {conns} -z {duration} URL`; `/host` with `--urls-from-file` "
      f"listing `/host?fqdn=<name>` for all {hosts:,} hosts (oha picks a random line per request). "
      f"`/healthz` and `/host` alternate {repeats} times; the table shows the run with the median req/s of each, "
      "the ratio is that of the medians.")
    w("")
    lines += throughput_lines(h_all, "`/host`", p_all, h_max, p_max, "`/host?fqdn=`")
    pairs = sorted(p["rps"] / h["rps"] for h, p in zip(h_all, p_all))
    w("")
    w(f"The median of the pair ratios (each `/host` run against the `/healthz` run just before it, "
      f"less exposed to what else the machine did meanwhile) is {pairs[(len(pairs) - 1) // 2]:.0%}.")
    w("")
    w("What the bridge counted in each run (`/metrics` before and after), CPU seconds (the bridge; "
      "PostgreSQL replica and primary, all backends; oha; every other process on the machine, which "
      "the benchmark does not control), and directory loads that ended inside it:")
    w("")
    w("| run | polls | granted (leases written) | refused by the shared budget | "
      "CPU bridge / replica / primary / oha / others | directory loads |")
    w("|---|---:|---:|---|---|---|")
    for name in [f"{k}-max-{i}" for i in range(1, repeats + 1) for k in ("healthz", "host")] + ["healthz-rate", "host-rate"]:
        c, u = counts[name], cpus[name]
        refused = ", ".join(f"{k}: {v:,.0f}" for k, v in c["refused"].items()) or "none"
        in_run = load_in_window(loads, win[name])
        load_text = ", ".join(f"{l['elapsed_ms']:,} ms" for l in in_run) or "none"
        cpu_text = " / ".join(f"{u[k]:.1f}" for k in ("bridge", "replica", "primary", "oha", "others") if k in u)
        w(f"| `{name}` | {c['polls']:,.0f} | {c['granted']:,.0f} | {refused} | {cpu_text} s | {load_text} |")
    w("")
    w(f"The scheduler admits {pool_rate:,.1f} runs/s here; a poll is granted only when its host is due and "
      "a server has budget, so grants follow that rate (or the rate at which due hosts happen to poll), "
      "not the request rate: every other poll is answered from memory without a database round trip.")
    w("")
    w("### Latency at a fixed rate (open loop)")
    w("")
    w(f"`oha --no-tui --output-format csv -c {conns} -q {rate:g} --latency-correction -z {rate_duration} URL` "
      + LATENCY_CORRECTION + " The CSV keeps every request; "
      f"percentiles are nearest-rank over all of them. {hosts:,} agents polling every 60 s would send "
      f"≈ {hosts / 60:,.0f} req/s.")
    w("")
    w("| endpoint | answered / scheduled | achieved req/s | p50 | p90 | p99 | p99.9 | max | statuses |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, r in (("`/healthz`", h_rate), ("`/host?fqdn=`", p_rate)):
        p = r["pct"]
        w(f"| {label} | {r['answered']:,} / {r['expected']:,} | {r['rps']:,.0f} | {ms(p.get('p50'), 3)} | "
          f"{ms(p.get('p90'), 3)} | {ms(p.get('p99'), 3)} | {ms(p.get('p99.9'), 3)} | {ms(p.get('max'), 1)} | "
          f"{', '.join(f'{n:,} × {code}' for code, n in sorted(r['codes'].items()))} |")
    w("")
    d, o = p_rate["during"], p_rate["others"]
    if p_rate["loads"]:
        reloads = ", ".join(f"{l['elapsed_ms']:,} ms" for l in p_rate["loads"])
        w(f"The `/host` run spans {len(p_rate['loads'])} reload(s) of the host directory "
          f"({reloads}). "
          "Requests in flight while one ran (times from the bridge's log and oha's CSV, aligned to within "
          "about 0.1 s) against the rest:")
        w("")
        w("| `/host` requests | count | p50 | p99 | p99.9 | max |")
        w("|---|---:|---:|---:|---:|---:|")
        for label, q in (("in flight during a directory reload", d), ("all others", o)):
            w(f"| {label} | {q['n']:,} | {ms(q.get('p50'), 3)} | {ms(q.get('p99'), 3)} | {ms(q.get('p99.9'), 3)} | "
              f"{ms(q.get('max'), 1)} |")
        w("")
        w(f"Of the {p_rate['worst']:,} slowest requests (the 1 % above p99), {p_rate['worst_during']:,} were in "
          "flight during a reload.")
    else:
        w("No directory reload ended during the `/host` run.")
    w("")
    w("### Host directory and memory")
    w("")
    w("| | value |")
    w("|---|---:|")
    w(f"| `/healthz` answering after start | {f['healthy_s']} s |")
    w(f"| `pvc_bridge_hosts` = {hosts:,} (polled every 0.1 s) | **{f['directory_ready_s']} s** after start |")
    if first:
        w(f"| first load, from the log: query / whole load / with the scheduler update | "
          f"{first.get('query_ms', '–'):,} / {first.get('load_ms', '–'):,} / {first.get('elapsed_ms', '–'):,} ms |")
    if later:
        el = sorted(l["elapsed_ms"] for l in later)
        w(f"| rebuilds while measuring: count, min / median / max | {len(el)}: "
          f"{el[0]:,} / {el[(len(el) - 1) // 2]:,} / {el[-1]:,} ms |")
    rss, hwm = int(f["loaded_rss_kb"]) * 1024, int(f["loaded_hwm_kb"]) * 1024
    w(f"| RSS with the directory loaded / peak so far | **{rss / MB:,.1f} MB** ({rss / hosts:,.0f} B per host, "
      f"everything included) / {hwm / MB:,.1f} MB |")
    if "loaded_malloc_in_use" in f:
        w(f"| glibc heap in use / taken from the system, then | {int(f['loaded_malloc_in_use']) / MB:,.1f} MB / "
          f"{int(f['loaded_malloc_system']) / MB:,.1f} MB |")
    w(f"| RSS / peak RSS after all runs (reloads build the new directory beside the old one) | "
      f"{int(f['end_rss_kb']) * 1024 / MB:,.1f} MB / {int(f['end_hwm_kb']) * 1024 / MB:,.1f} MB |")
    if "end_malloc_in_use" in f:
        w(f"| glibc heap in use / taken from the system, then | {int(f['end_malloc_in_use']) / MB:,.1f} MB / "
          f"{int(f['end_malloc_system']) / MB:,.1f} MB |")
    w("")
    lines += profile_lines(run, f, rate, conns)
    w("### How to read")
    w("")
    w("- Everything runs on one 2-core machine: oha, the bridge and both PostgreSQL servers share it, so "
      "absolute req/s are this machine's; the **ratio** to `/healthz` in the same run (same client, same "
      "connections, same moment) is what carries over. `/healthz` does no work, so the ratio is the share "
      "of the machine left after the request's own work: directory lookup, scheduler decision, shell-quoted answer.")
    w("- The closed-loop runs say how much the bridge can take; the open-loop run says how a fleet polling "
      "at its own pace sees it. Its p99 includes any stall (a directory reload, a grant waiting for the "
      "primary), because latency counts from the scheduled send time.")
    w("- In the off-CPU table, a worker in `Mutex::lock_contended` under `RunService::scheduler` waits for "
      "the scheduler's mutex; one in `RwLock::read_contended` under `RunService::host` waits for the host "
      "directory's lock. While a worker waits, every request on its connections waits too.")
    w("- The `others` CPU column is what other processes on the machine used during each run (it is "
      "shared): the benchmark neither controls nor subtracts it, so compare runs of the same row kind.")
    w("- Grants are the only polls that touch the database (one `pvc.grant` call on the primary); their "
      "number is set by the scheduler's admissible rate, not by the load, which is why the table lists "
      "them per run.")
    w("")
    lines += missed_lines(met, {
        "ratio": lambda: f"- `/host` max throughput is {ratio:.0%} of `/healthz`, below {TARGET_HOST_RATIO:.0%}.",
        "p99": lambda: (f"- `/host` p99 {ms(p_rate['pct'].get('p99'), 3)} at {rate:g} req/s is above "
                        f"{TARGET_P99_MS:g} ms" + (
                            f"; requests in flight during a directory reload: p99 {ms(d.get('p99'), 3)}, "
                            f"all others {ms(o.get('p99'), 3)}." if p_rate["loads"] else ".")),
    })
    text = "\n".join(lines) + "\n"
    summary = (between(text, "### Summary", "### Throughput") + "\n\n"
               f"fleet generation: {int(f['param_BIG_FLEET']):,} hosts {f['fleet_gen_s']} s; "
               f"directory loaded {f['directory_ready_s']} s after start")
    return text, summary


def next_reload(run):
    """When the next directory load should start (epoch): loads repeat
    hosts_refresh_secs (30 s) after the previous one ends. At least 1.5 s
    from now, so a trace can start before it."""
    import time
    loads = directory_loads(run)
    at = (loads[-1]["end"] if loads else time.time()) + 30.0
    while at < time.time() + 1.5:
        at += 30.0
    print(f"{at:.3f}")


if __name__ == "__main__":
    # host.sh: `report_host.py reload-span RUN_DIR RUN_NAME`, `report_host.py next-reload RUN_DIR`
    import sys
    if sys.argv[1:2] == ["reload-span"]:
        reload_span(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["next-reload"]:
        next_reload(sys.argv[2])
