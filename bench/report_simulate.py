"""The `simulate` section of docs/benchmarks.md, from one bench/simulate.sh
run (bench/runs/<date>-simulate/): the scheduler's simulated day beside
Puppet's agent daemon (`runinterval` + splay) and cron, all three in the same
run; bench/report.py calls render().

Only reads what `pvc-bridge simulate` wrote (summary.json, summary.md,
chart.png); the criteria and their verdicts are the simulator's own.
"""

import json
import os
import shutil

import report_util
from report_util import load_facts, panels

LABELS = {"pvc": "pvc-bridge", "daemon": "daemon (runinterval + splay)", "cron": "cron (fqdn_rand minute)"}
ROLES = {"pvc": "measured", "daemon": "baseline", "cron": "baseline2"}


def render(run):
    """(markdown section, terminal summary) of one simulate.sh run."""
    f = load_facts(run)
    sim = os.path.join(run, "sim")
    with open(os.path.join(sim, "summary.json")) as fh:
        summary = json.load(fh)
    with open(os.path.join(sim, "summary.md")) as fh:
        table = fh.read().strip()
    cfg = summary["config"]
    strategies = summary["strategies"]
    names = [s["strategy"] for s in strategies]

    # The simulator's own chart: utilisation, starts and queue wait per
    # server and minute, one row per strategy.
    os.makedirs(report_util.CHART_DIR, exist_ok=True)
    shutil.copyfile(os.path.join(sim, "chart.png"), os.path.join(report_util.CHART_DIR, "simulate-day.png"))

    lines = []
    w = lines.append
    w("## Scheduling: a simulated day against `runinterval` + splay and cron")
    w("")
    w(f"From `bench/simulate.sh`: `pvc-bridge simulate` (the scheduler's own code in virtual time against "
      "modelled puppetservers; the model and every option: [scheduling.md](scheduling.md)), with its two "
      f"baselines simulated in the same run on the same fleet, run times and events. Raw output in `{f['run_dir']}/sim/` "
      "(per-minute CSV, JSON).")
    w("")
    w("### Run")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| date | {f['date']} |")
    w(f"| command | `make bench`{' with `SIM_ARGS=' + f['param_SIM_ARGS'] + '`' if f.get('param_SIM_ARGS') else ''} |")
    dirty = [p for p in f.get("dirty", "").split() if not p.startswith("docs/")]
    w(f"| commit | `{f['commit']}`{' plus uncommitted changes to ' + ', '.join(dirty) if dirty else ''} |")
    w(f"| machine | {f['nproc']} cores ({f['cpu']}), {f['ram_gib']} GiB RAM, Linux {f['kernel']} |")
    w(f"| fleet | {cfg['hosts']:,} hosts, {cfg['pools']} pool(s) × {cfg['servers_per_pool']} servers × "
      f"{cfg['jrubies']} JRubies; period {cfg['period_s'] / 60:g} min, polls every {cfg['poll_s']:g} s; "
      f"{cfg['hours']:g} h simulated, the first {cfg['warmup_s'] / 3600:g} h left out; seed {cfg['seed']} |")
    w(f"| wall time | {f['wall_s']} s for all strategies (the figures depend only on the options and the seed) |")
    w("")
    w("### Summary")
    w("")
    w("| measurement | pvc-bridge | " + " | ".join(LABELS.get(n, n) for n in names if n != "pvc") + " |")
    w("|---|---:|" + "---:|" * (len(names) - 1))
    ordered = sorted(strategies, key=lambda s: s["strategy"] != "pvc")

    def row(label, fmt):
        w(f"| {label} | " + " | ".join(fmt(s) for s in ordered) + " |")

    row("JRuby utilisation per server-minute: peak (target "
        f"{cfg['target_utilization']:.0%})", lambda s: f"{s['utilization_peak']:.1%}")
    row("borrow queue wait p99", lambda s: f"{s['queue_wait']['p99']:.2f} s")
    row("run starts per minute: coefficient of variation (outage hour excluded)",
        lambda s: f"{s['starts_per_min_cv']:.1%}")
    row("run starts per second: max", lambda s: f"{s['starts_per_sec_max']:,}")
    row("time between full runs: p99 / max",
        lambda s: f"{s['full_run_gap']['p99'] / 60:.1f} / {s['full_run_gap']['max'] / 60:.1f} min")
    row("file change → run start: p50 / max",
        lambda s: f"{s['file_changes']['delay']['p50'] / 60:.1f} / {s['file_changes']['delay']['max'] / 60:.1f} min")
    row("hosts beyond max_interval", lambda s: f"{s['hosts_beyond_max_interval']:,}")
    w("")
    def bars(pick):
        return [(LABELS.get(s["strategy"], s["strategy"]), ROLES.get(s["strategy"], "baseline3"), pick(s))
                for s in ordered]

    w(panels("simulate-compare", "Simulated day: pvc-bridge against runinterval + splay and cron", [
        (f"peak JRuby utilisation (target {cfg['target_utilization']:.0%})", "%",
         bars(lambda s: s["utilization_peak"] * 100)),
        ("borrow queue wait, p99", "s", bars(lambda s: s["queue_wait"]["p99"])),
        ("run starts per second, max", "runs/s", bars(lambda s: s["starts_per_sec_max"])),
        ("run starts per minute, CV", "%", bars(lambda s: s["starts_per_min_cv"] * 100)),
        ("longest time between full runs", "min", bars(lambda s: s["full_run_gap"]["max"] / 60)),
        ("file change → run start, p50", "min", bars(lambda s: s["file_changes"]["delay"]["p50"] / 60)),
    ]))
    w("")
    w("![The simulated day: JRuby utilisation, runs started and borrow queue wait per server and minute, "
      "one row per strategy](bench/simulate-day.png)")
    w("")
    w("### Every figure, and the criteria")
    w("")
    w("As `pvc-bridge simulate` printed them:")
    w("")
    w(table)
    w("")
    text = "\n".join(lines) + "\n"
    summary_text = text[text.index("### Summary"):text.index("![Simulated day")].strip()
    return text, summary_text
