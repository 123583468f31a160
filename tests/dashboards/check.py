#!/usr/bin/env python3
"""Checks docs/grafana-dashboard.json and docs/alerts.yml against what the
bridge exports.

Metric names come from bridge/src/http/metrics.rs (every `pvc_bridge_*` name
it writes; a histogram's `_bucket`, `_sum`, `_count`). With --metrics (a
file scraped from a running bridge's /metrics), the scrape must hold only
names metrics.rs has (so the source list is complete), and every selector's
label names and `=` values must occur in the scrape where the metric has
samples there.

Dashboard: valid JSON, schemaVersion >= 36, a DS_PROMETHEUS datasource input
that every panel and target uses, unique panel ids, every target an `expr`
whose metric names exist and whose variables are defined.

Alerts: valid YAML in Prometheus' rule-file shape; every rule has an alert
name, an expr, a `for:`, a severity (critical, warning, info), a summary and
a description that links an existing docs/operations.md section; `$labels.x`
in annotations must be a label the expression keeps.

PromQL is checked by a small lexer, not a parser: balanced brackets, known
functions and keywords, metric names; promtool is not used. Prints one line
per problem, then a summary; exit status 1 on any problem.
"""

import argparse
import json
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    print("dashboards: FAILED: PyYAML is missing (Debian: apt-get install python3-yaml)")
    sys.exit(1)

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_month", "day_of_week", "days_in_month", "delta",
    "deriv", "exp", "floor", "histogram_quantile", "holt_winters", "hour", "idelta", "increase",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "max_over_time", "min_over_time", "minute", "month", "predict_linear", "quantile_over_time",
    "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "time", "timestamp", "vector", "year",
    # aggregations
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"')
VARIABLE = re.compile(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?")
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
SEVERITIES = {"critical", "warning", "info"}


def source_names(metrics_rs: str) -> set:
    names = set(re.findall(r"\bpvc_bridge_[a-z0-9_]+\b", metrics_rs))
    for h in re.findall(r"# TYPE (pvc_bridge_[a-z0-9_]+) histogram", metrics_rs):
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names


def parse_scrape(text: str):
    """(names declared or sampled, {name: {label: {values}}} of samples)."""
    declared, samples = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            declared.add(name)
            if kind == "histogram":
                declared |= {name + "_bucket", name + "_sum", name + "_count"}
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+$", line)
            if not m:
                raise ValueError(f"unparsable sample line: {line!r}")
            labels = samples.setdefault(m.group(1), {})
            for k, _, v in MATCHER.findall(m.group(3) or ""):
                labels.setdefault(k, set()).add(v)
    return declared | set(samples), samples


class Expr:
    """What the lexer found in one PromQL expression."""

    def __init__(self, text: str, variables: set):
        self.text = text
        self.problems = []
        self.selectors = []  # (metric, [(label, op, value)])
        self.by_labels = set()
        self.metrics = set()
        body = text
        for var in set(VARIABLE.findall(body)):
            if var not in variables and var not in BUILTIN_VARIABLES:
                self.problems.append(f"undefined variable ${var}")
        body = VARIABLE.sub(lambda m: "5m" if m.group(1) in BUILTIN_VARIABLES else "1", body)
        depth = {"(": 0, "[": 0, "{": 0}
        closing = {")": "(", "]": "[", "}": "{"}
        in_string = False
        for i, c in enumerate(body):
            if c == '"' and (i == 0 or body[i - 1] != "\\"):
                in_string = not in_string
            elif not in_string and c in depth:
                depth[c] += 1
            elif not in_string and c in closing:
                depth[closing[c]] -= 1
                if depth[closing[c]] < 0:
                    self.problems.append(f"unbalanced {c!r}")
                    depth[closing[c]] = 0
        if in_string or any(depth.values()):
            self.problems.append("unbalanced brackets or quotes")
        for metric, inner in SELECTOR.findall(body):
            self.selectors.append((metric, MATCHER.findall(inner)))
            rest = MATCHER.sub("", inner).replace(",", "").strip()
            if rest:
                self.problems.append(f"unparsable matchers {{{inner}}}")
        for _, labels in GROUPING.findall(body):
            self.by_labels |= {l.strip() for l in labels.split(",") if l.strip()}
        body = re.sub(r'"(?:[^"\\]|\\.)*"', " ", body)
        body = re.sub(r"\{[^{}]*\}", " ", body)
        body = re.sub(r"\[[^\[\]]*\]", " ", body)
        body = GROUPING.sub(" ", body)
        for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", body):
            word, call = m.group(1), m.group(2)
            if call:
                if word not in FUNCTIONS:
                    self.problems.append(f"unknown function {word}()")
            elif word.lower() in KEYWORDS:
                continue
            elif re.fullmatch(r"e\d*", word) and body[max(m.start() - 1, 0)].isdigit():
                continue  # the exponent of a number such as 1e6
            else:
                self.metrics.add(word)
        if not self.metrics and not re.match(r"\s*vector\s*\(", text):
            self.problems.append("names no metric")


def check_expr(where, expr, known, scrape, problems):
    for p in expr.problems:
        problems.append(f"{where}: {p}: {expr.text.strip()}")
    for name in sorted(expr.metrics):
        if name not in known:
            problems.append(f"{where}: {name} is not exported by metrics.rs")
    if scrape is None:
        return
    for metric, matchers in expr.selectors:
        live = scrape.get(metric)
        if not live:
            continue  # no samples in this scrape (a section not configured)
        for label, op, value in matchers:
            if label not in live:
                problems.append(f"{where}: {metric} has no label {label} (has {sorted(live)})")
            elif op == "=" and value not in live[label]:
                problems.append(
                    f"{where}: {metric}{{{label}=\"{value}\"}} matches nothing "
                    f"(values: {sorted(live[label])})"
                )


def slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set:
    out = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check_dashboard(path, known, scrape, problems):
    dash = json.loads(path.read_text())
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        problems.append(f"{path}: schemaVersion {dash.get('schemaVersion')!r} (want >= 36)")
    inputs = {i.get("name"): i for i in dash.get("__inputs", [])}
    ds = inputs.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("pluginId") != "prometheus":
        problems.append(f"{path}: __inputs lacks the DS_PROMETHEUS prometheus datasource")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    ids, exprs, n_panels = set(), 0, 0
    for panel in all_panels(dash.get("panels", [])):
        where = f"{path.name} panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("id") in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(panel.get("id"))
        if "gridPos" not in panel:
            problems.append(f"{where}: no gridPos")
        if panel.get("type") == "row":
            continue
        n_panels += 1
        if panel.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            problems.append(f"{where}: datasource is not ${{DS_PROMETHEUS}}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        for target in targets:
            if target.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                problems.append(f"{where} {target.get('refId')}: datasource is not ${{DS_PROMETHEUS}}")
            text = target.get("expr")
            if not text:
                problems.append(f"{where} {target.get('refId')}: no expr")
                continue
            exprs += 1
            check_expr(f"{where} {target.get('refId')}", Expr(text, variables), known, scrape, problems)
    return n_panels, exprs


def check_alerts(path, operations, known, scrape, problems):
    doc = yaml.safe_load(path.read_text())
    sections = anchors(operations.read_text())
    rules = []
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        problems.append(f"{path}: no groups list")
        return 0
    for group in doc["groups"]:
        if not group.get("name") or not isinstance(group.get("rules"), list):
            problems.append(f"{path}: a group without name or rules")
            continue
        rules += group["rules"]
    names = set()
    for rule in rules:
        name = rule.get("alert")
        where = f"{path.name} {name}"
        if not name:
            problems.append(f"{path}: a rule without alert name (recording rules are not expected)")
            continue
        if name in names:
            problems.append(f"{where}: duplicate alert")
        names.add(name)
        unknown = set(rule) - {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        if not re.fullmatch(r"(\d+[smhdwy])+", str(rule.get("for", ""))):
            problems.append(f"{where}: no valid for: ({rule.get('for')!r})")
        severity = (rule.get("labels") or {}).get("severity")
        if severity not in SEVERITIES:
            problems.append(f"{where}: severity {severity!r} not in {sorted(SEVERITIES)}")
        annotations = rule.get("annotations") or {}
        for key in ("summary", "description"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{where}: no {key} annotation")
        links = re.findall(r"docs/operations\.md#([\w-]+)", str(annotations.get("description", "")))
        if not links:
            problems.append(f"{where}: description links no docs/operations.md section")
        for link in links:
            if link not in sections:
                problems.append(f"{where}: docs/operations.md has no section #{link}")
        text = str(rule.get("expr", ""))
        expr = Expr(text, set())
        check_expr(where, expr, known, scrape, problems)
        if expr.by_labels:
            kept = expr.by_labels
        else:
            kept = set(TARGET_LABELS)
            for metric in expr.metrics:
                kept |= set((scrape or {}).get(metric, {}))
        for key, value in annotations.items():
            for label in re.findall(r"\$labels\.(\w+)", str(value)):
                if (expr.by_labels or scrape is not None) and label not in kept:
                    problems.append(f"{where}: {key} uses $labels.{label}, which the expr drops")
            if str(value).count("{{") != str(value).count("}}"):
                problems.append(f"{where}: {key}: unbalanced template braces")
    return len(rules)


def main():
    root = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", help="a file holding a live /metrics scrape")
    ap.add_argument("--source", default=root / "bridge/src/http/metrics.rs", type=Path)
    ap.add_argument("--dashboard", default=root / "docs/grafana-dashboard.json", type=Path)
    ap.add_argument("--alerts", default=root / "docs/alerts.yml", type=Path)
    ap.add_argument("--operations", default=root / "docs/operations.md", type=Path)
    args = ap.parse_args()

    problems = []
    known = source_names(args.source.read_text())
    if not known:
        problems.append(f"{args.source}: no pvc_bridge_* names found")
    scrape = None
    live_note = "metrics.rs only"
    if args.metrics:
        declared, scrape = parse_scrape(Path(args.metrics).read_text())
        ours = {n for n in declared if n.startswith("pvc_bridge_")}
        for name in sorted(ours - known):
            problems.append(f"scrape: {name} is exported but metrics.rs does not name it (parser out of date)")
        if not ours:
            problems.append("scrape: no pvc_bridge_* metrics in it")
        absent = sorted(known - ours)
        live_note = f"a live /metrics ({len(ours & known)} of {len(known)} names present"
        live_note += f"; absent: {', '.join(absent)})" if 0 < len(absent) <= 5 else ")"
    try:
        panels, exprs = check_dashboard(args.dashboard, known, scrape, problems)
    except (OSError, ValueError) as e:
        problems.append(f"{args.dashboard}: {e}")
        panels = exprs = 0
    try:
        rules = check_alerts(args.alerts, args.operations, known, scrape, problems)
    except (OSError, yaml.YAMLError) as e:
        problems.append(f"{args.alerts}: {e}")
        rules = 0
    for p in problems:
        print(f"  {p}")
    verdict = "FAILED" if problems else "ok"
    print(
        f"dashboards: {verdict}: {panels} panels, {exprs} dashboard expressions, {rules} alert rules "
        f"checked against metrics.rs and {live_note}; {len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
