// The status page in headless Chromium (Debian's chromium, driven by
// playwright-core): the page loads with its script, polls /stats, draws
// its charts with data points, shows the same numbers /metrics does (the
// rollouts and the hostgroups behind max_interval too), fits
// a laptop and a wall screen, and a screenshot is saved.
//
//   node status-page.mjs http://127.0.0.1:8081 ../../docs/status-page.png
//
// Exits non-zero with the reason on the first failed check.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node status-page.mjs <bridge URL> <screenshot.png>");
  process.exit(2);
}

const failures = [];
function check(ok, what) {
  if (!ok) failures.push(what);
  return ok;
}

/** Sums the samples of a metric in Prometheus text, optionally by label. */
function metric(text, name, labels = "") {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = line.match(/^([a-z_]+)(\{[^}]*\})?\s+(\S+)$/);
    if (!m || m[1] !== name) continue;
    if (labels && !(m[2] || "").includes(labels)) continue;
    sum += Number(m[3]);
    found = true;
  }
  return found ? sum : null;
}
/** Every sample of a metric: [{labels: {k: v}, value}]. */
function samples(text, name) {
  const out = [];
  for (const line of text.split("\n")) {
    const m = line.match(/^([a-z_]+)(\{[^}]*\})?\s+(\S+)$/);
    if (!m || m[1] !== name) continue;
    const labels = {};
    for (const [, k, v] of (m[2] || "").matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}
function bytes(b) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + units[i];
}
function series(text, name) {
  return text.split("\n").filter((l) => l.startsWith(name + "{") || l.startsWith(name + " ")).length;
}

const profile = mkdtempSync(join(tmpdir(), "pvc-chromium-"));
// A fresh profile (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1600, height: 1000 },
});
let summary = "";
try {
  const page = browser.pages()[0] || (await browser.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  // Nothing but the bridge: no CDN, no other origin.
  const foreign = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) foreign.push(r.url()); });

  const response = await page.goto(base + "/", { waitUntil: "load" });
  check(response && response.status() === 200, `GET / answered ${response && response.status()}`);
  check((response.headers()["content-type"] || "").startsWith("text/html"), "GET / is not HTML");

  // The numbers of /metrics, read after the driver stopped; the page's
  // document is at most one refresh older, so wait for a poll after this.
  const metrics = await (await fetch(base + "/metrics")).text();
  const want = {
    granted: metric(metrics, "pvc_bridge_runs_granted_total"),
    forced: metric(metrics, "pvc_bridge_runs_granted_total", 'trigger="file_change"'),
    hits: metric(metrics, "pvc_bridge_enc_cache_hits_total"),
    reports: metric(metrics, "pvc_bridge_reports_total"),
    replicas: series(metrics, "pvc_bridge_replica_up"),
    servers: series(metrics, "pvc_bridge_server_up"),
    pools: series(metrics, "pvc_bridge_pool_hosts"),
  };
  check(want.granted > 0, `the bridge granted no runs (pvc_bridge_runs_granted_total ${want.granted})`);
  check(want.hits > 0, `no ENC cache hits (pvc_bridge_enc_cache_hits_total ${want.hits})`);
  check(want.replicas > 0, "no replica in /metrics");

  const read = (name) => page.$eval(`[data-field="${name}"]`, (n) => n.textContent);
  const asNumber = (text) => Number(String(text).replace(/,/g, ""));
  let got = {};
  // Two polls at most: the first may show a snapshot computed before the
  // driver's last request.
  for (let attempt = 0; attempt < 3; attempt++) {
    await page.waitForFunction((n) => Number(document.body.dataset.updates || 0) > n, attempt, { timeout: 20000 });
    got = {
      granted: asNumber(await read("runs.granted_total")),
      forced: asNumber(await read("runs.granted_file_change")),
      hits: asNumber(await read("enc.hits")),
      reports: asNumber(await read("runs.reports")),
      replicas: asNumber(await read("replicas.count")),
      replicaRows: await page.$$eval("#replicas tbody tr", (rows) => rows.length),
      servers: await page.$$eval("#servers .server", (rows) => rows.length),
      pools: await page.$$eval("#pool-charts figure", (rows) => rows.length),
    };
    if (got.granted === want.granted && got.hits === want.hits && got.reports === want.reports) break;
  }
  for (const key of ["granted", "forced", "hits", "reports", "replicas", "servers", "pools"]) {
    check(got[key] === want[key], `page shows ${key} ${got[key]}, /metrics ${want[key]}`);
  }
  check(got.replicaRows === want.replicas, `replica table has ${got.replicaRows} rows, /metrics ${want.replicas} replicas`);

  // Charts drawn, with data points.
  const charts = await page.$$eval("svg.runs-chart", (svgs) => svgs.map((s) => ({
    points: Number(s.dataset.points), total: Number(s.dataset.total),
    rects: s.querySelectorAll("rect.point").length,
  })));
  check(charts.length === want.pools, `${charts.length} run charts for ${want.pools} pools`);
  const runPoints = charts.reduce((a, c) => a + c.rects, 0);
  const runTotal = charts.reduce((a, c) => a + c.total, 0);
  check(runPoints > 0, "the runs-per-minute charts have no data points");
  // Every run this (only) process granted is in the history.
  check(runTotal === want.granted, `the runs-per-minute charts count ${runTotal} runs, /metrics ${want.granted}`);
  const ages = await page.$$eval("svg.age-chart", (svgs) => svgs.map((s) => ({
    points: Number(s.dataset.points),
    drawn: [...s.querySelectorAll("rect.point")].filter((r) => Number(r.getAttribute("height")) > 0).length,
    limit: s.querySelectorAll("line.limit").length,
  })));
  check(ages.length === 2, `${ages.length} fairness charts`);
  check(ages.every((a) => a.drawn > 0 && a.drawn === a.points), "a fairness chart has no bars");
  check(ages.every((a) => a.limit === 1), "a fairness chart lacks the max_interval line");
  const bars = await page.$$eval("svg.util-chart", (svgs) => svgs.filter((s) => s.querySelector("rect.point") && s.querySelector("line.target")).length);
  check(bars === want.servers, `${bars} utilisation bars for ${want.servers} servers`);
  const converges = await page.$$eval("[data-converge]", (n) => n.length);
  check(converges > 0, "no converge request in progress shown");
  // The ENC's answer time comes from the request timings of /metrics.
  const timed = await read("enc.latency.mean");
  check(timed !== "not timed" && series(metrics, "pvc_bridge_http_request_duration_seconds_count") > 0,
    `ENC answer time: page ${timed}, /metrics has no request durations`);

  // Rollouts: every rollout /metrics has, with its wave and host counts.
  const rollouts = samples(metrics, "pvc_bridge_rollout_waves");
  check(metric(metrics, "pvc_bridge_rollout_plugin_installed") === 1, "the rollout plugin's tables are not seen");
  check(rollouts.length === 2, `${rollouts.length} rollouts in /metrics, the demo has 2`);
  check(await page.$eval("#rollouts", (n) => n.dataset.source) === "read", "the rollouts panel did not read the plugin's tables");
  const shown = await page.$$eval("[data-rollout]", (boxes) => boxes.map((b) => ({
    name: b.dataset.rollout,
    wave: b.querySelector("[data-wave]").dataset.wave,
    segments: b.querySelectorAll(".stack span").length,
    all: Object.fromEntries([...b.querySelectorAll("[data-all]")].map((n) => [n.dataset.all, Number(n.textContent.replace(/,/g, ""))])),
  })));
  check(shown.length === rollouts.length, `${shown.length} rollouts on the page, ${rollouts.length} in /metrics`);
  let rolloutHosts = 0;
  for (const { labels, value: waves } of rollouts) {
    const box = shown.find((b) => b.name === labels.rollout);
    if (!check(box, `rollout ${labels.rollout} is not on the page`)) continue;
    const current = metric(metrics, "pvc_bridge_rollout_current_wave", `rollout="${labels.rollout}"`);
    check(box.wave === `${current}/${waves}`, `rollout ${labels.rollout}: page wave ${box.wave}, /metrics ${current}/${waves}`);
    check(box.segments > 0, `rollout ${labels.rollout}: no progress bar`);
    for (const outcome of ["ok", "failed", "unreachable", "pending"]) {
      const want = metric(metrics, "pvc_bridge_rollout_hosts", `rollout="${labels.rollout}",outcome="${outcome}"`);
      check(box.all[outcome] === want, `rollout ${labels.rollout}: page ${outcome} ${box.all[outcome]}, /metrics ${want}`);
      rolloutHosts += want;
    }
  }
  check(metric(metrics, "pvc_bridge_rollouts_paused_by_failures") === 1, "the paused rollout is not counted as paused by failures");

  // Hostgroups: the rows behind max_interval are the series of /metrics.
  const groups = await page.$$eval("#fair-hostgroups tbody tr", (rows) => rows.map((r) => ({
    name: r.dataset.hostgroup,
    hosts: Number(r.cells[1].textContent.replace(/,/g, "")),
    beyond: Number(r.cells[2].textContent.replace(/,/g, "")),
  })));
  const behind = samples(metrics, "pvc_bridge_hosts_beyond_max_interval_by_hostgroup");
  const groupTotal = asNumber(await read("fairness.hostgroups.total"));
  check(groups.length === Math.min(groupTotal, 20), `${groups.length} hostgroup rows of ${groupTotal}`);
  check(behind.length > 0, "no hostgroup with hosts beyond max_interval in /metrics (the demo's stopped hosts)");
  check(asNumber(await read("fairness.hostgroups.with_hosts_beyond")) === metric(metrics, "pvc_bridge_hostgroups_beyond_max_interval"),
    "hostgroups behind: page and /metrics differ");
  for (const { labels, value } of behind) {
    const row = groups.find((g) => g.name === labels.hostgroup);
    check(row && row.beyond === value, `hostgroup ${labels.hostgroup}: page ${row && row.beyond} beyond, /metrics ${value}`);
  }
  check(groups.filter((g) => g.beyond > 0).length === behind.length, "hostgroup rows behind differ from /metrics");
  check(groups.slice(1).every((g, i) => groups[i].beyond >= g.beyond), "hostgroups are not worst first");
  const groupHosts = groups.reduce((a, g) => a + g.hosts, 0);
  if (groupTotal <= 20) check(groupHosts === metric(metrics, "pvc_bridge_hosts"), `hostgroup rows hold ${groupHosts} hosts, /metrics ${metric(metrics, "pvc_bridge_hosts")}`);
  const behindHosts = behind.reduce((a, b) => a + b.value, 0);
  check(behindHosts === metric(metrics, "pvc_bridge_hosts_beyond_max_interval"), `by hostgroup ${behindHosts} hosts behind, by pool ${metric(metrics, "pvc_bridge_hosts_beyond_max_interval")}`);

  // Gauges the page names: the lag bound, converge requests.
  check(await read("replicas.max_lag") === bytes(metric(metrics, "pvc_bridge_replica_max_lag_bytes")), "the replica lag bound differs from /metrics");
  check(asNumber(await read("converges.count")) === metric(metrics, "pvc_bridge_converge_requests_in_progress"), "converge requests in progress differ from /metrics");
  check(samples(metrics, "pvc_bridge_pool_utilization_target").length === want.pools, "a pool lacks its utilisation target");

  const badge = await page.$eval("#state", (n) => n.textContent);
  check(badge === "ok" || badge === "attention", `status badge says ${badge}`);

  await page.screenshot({ path: screenshot, fullPage: true });

  // A laptop and a phone-width window: nothing wider than the window.
  for (const width of [1280, 420]) {
    await page.setViewportSize({ width, height: 800 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `at ${width} px the page is ${overflow} px wider than the window`);
  }
  check(errors.length === 0, `errors in the page: ${errors.join("; ")}`);
  check(foreign.length === 0, `requests outside the bridge: ${foreign.join(", ")}`);
  summary = `status page: ${charts.length} run charts (${runPoints} points, ${runTotal} runs), ` +
    `2 fairness charts, ${bars} servers, ${got.replicas} replicas, ${groups.length} hostgroups ` +
    `(${behind.length} behind), ${shown.length} rollouts (${rolloutHosts} hosts); granted ${got.granted}, ` +
    `forced ${got.forced}, cache hits ${got.hits}, reports ${got.reports} as in /metrics`;
} catch (error) {
  failures.push(String(error && error.stack || error));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
if (failures.length) {
  console.error("FAIL " + failures.join("\n     "));
  process.exit(1);
}
console.log(summary);
