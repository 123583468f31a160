// The status page: polls /stats and draws it. No libraries: charts are
// inline SVG built here; every text goes through textContent.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  let period = 5000;
  let updates = 0;

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const pct = (r) => (r === null || r === undefined ? "–" : (100 * r).toFixed(1) + " %");
  function secs(s) {
    if (s === null || s === undefined) return "–";
    if (s < 120) return s.toFixed(0) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }
  function bytes(b) {
    if (b === null || b === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i ? b.toFixed(1) : b) + " " + units[i];
  }
  function field(name, text) {
    for (const node of document.querySelectorAll('[data-field="' + name + '"]')) node.textContent = text;
  }

  // Stacked columns, one per minute: scheduled, forced, converge.
  function runChart(series, title) {
    const n = series.scheduled.length;
    const W = 720, H = 170, L = 34, B = 20, T = 8;
    const totals = series.scheduled.map((s, i) => s + series.forced[i] + series.converge[i]);
    const max = Math.max(1, ...totals);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "runs-chart" });
    const cw = (W - L) / n;
    const scale = (H - B - T) / max;
    let points = 0, sum = 0;
    totals.forEach((total, i) => {
      if (!total) return;
      points++; sum += total;
      let y = H - B;
      for (const key of ["scheduled", "forced", "converge"]) {
        const v = series[key][i];
        if (!v) continue;
        const h = v * scale;
        y -= h;
        const r = el("rect", { x: (L + i * cw).toFixed(2), y: y.toFixed(2), width: Math.max(cw - 0.5, 0.8).toFixed(2), height: h.toFixed(2), class: key + " point" }, svg);
        el("title", {}, r).textContent = `${n - 1 - i} min ago: ${v} ${key}`;
      }
    });
    el("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }, svg);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
    el("text", { x: L - 4, y: T + 10, "text-anchor": "end" }, svg).textContent = String(max);
    el("text", { x: L - 4, y: H - B, "text-anchor": "end" }, svg).textContent = "0";
    el("text", { x: L, y: H - 4 }, svg).textContent = `−${n} min`;
    el("text", { x: W, y: H - 4, "text-anchor": "end" }, svg).textContent = "now";
    svg.dataset.points = String(points);
    svg.dataset.total = String(sum);
    return svg;
  }

  // A histogram of ages, buckets in fractions of max_interval, "never" last.
  function ageChart(dist, maxInterval, cls) {
    const labels = dist.buckets.map((b) => (b.le_secs === null ? ">" + secs(dist.buckets[dist.buckets.length - 2].le_secs) : "≤" + secs(b.le_secs)));
    const values = dist.buckets.map((b) => b.hosts);
    labels.push("never"); values.push(dist.never);
    const W = 720, H = 190, B = 30, T = 16;
    const max = Math.max(1, ...values);
    const cw = W / values.length;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "age-chart" });
    let points = 0;
    values.forEach((v, i) => {
      const h = (v / max) * (H - B - T);
      if (v) points++;
      const r = el("rect", { x: (i * cw + 3).toFixed(2), y: (H - B - h).toFixed(2), width: (cw - 6).toFixed(2), height: h.toFixed(2), class: "bar point " + cls }, svg);
      el("title", {}, r).textContent = `${labels[i]}: ${v} hosts`;
      el("text", { x: (i * cw + cw / 2).toFixed(2), y: H - B + 13, "text-anchor": "middle" }, svg).textContent = labels[i];
      el("text", { x: (i * cw + cw / 2).toFixed(2), y: (H - B - h - 3).toFixed(2), "text-anchor": "middle" }, svg).textContent = String(v);
    });
    // max_interval is the upper bound of the fourth bucket.
    const limit = dist.buckets.findIndex((b) => b.le_secs !== null && Math.abs(b.le_secs - maxInterval) < 1e-6);
    if (limit >= 0) {
      const x = (limit + 1) * cw;
      el("line", { x1: x, y1: T - 10, x2: x, y2: H - B, class: "limit" }, svg);
    }
    el("line", { x1: 0, y1: H - B, x2: W, y2: H - B, class: "axis" }, svg);
    svg.dataset.points = String(points);
    svg.dataset.total = String(values.reduce((a, b) => a + b, 0));
    return svg;
  }

  function utilBar(util, target) {
    const W = 300, H = 22;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "util-chart", preserveAspectRatio: "none" });
    el("rect", { x: 0, y: 4, width: W, height: H - 8, class: "track" }, svg);
    const u = Math.max(0, Math.min(1, util));
    el("rect", { x: 0, y: 4, width: (u * W).toFixed(2), height: H - 8, class: "util point" + (util > target ? " over" : "") }, svg);
    const x = Math.max(0, Math.min(1, target)) * W;
    el("line", { x1: x, y1: 0, x2: x, y2: H, class: "target" }, svg);
    return svg;
  }

  const OUTCOMES = ["ok", "failed", "unreachable", "pending"];

  // One rollout: name, flag, state, "wave k of n", the current wave's hosts
  // as a stacked bar, and every wave's hosts together.
  function rolloutBox(r) {
    const box = html("div", null, "rollout" + (r.paused_by_failures || r.state === "aborted" ? " attention" : ""));
    box.dataset.rollout = r.name;
    const head = html("div", null, "head");
    head.append(html("b", r.name), html("code", `${r.flag_name}=${r.flag_value}`), html("span", r.state, "tag " + r.state));
    const w = r.current;
    const waveText = w ? `wave ${w.number} of ${r.waves} (${w.state})` : `${r.waves} waves, none started`;
    const wave = html("span", waveText);
    wave.dataset.wave = w ? `${w.number}/${r.waves}` : `0/${r.waves}`;
    head.append(wave);
    if (w && w.awaiting_approval) head.append(html("span", "awaiting approval", "tag paused"));
    if (r.paused_by_failures) head.append(html("span", "paused by failures", "down"));
    box.append(head);
    if (w) {
      const bar = html("div", null, "stack");
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", `current wave: ${OUTCOMES.map((o) => `${w.hosts[o]} ${o}`).join(", ")}`);
      for (const o of OUTCOMES) {
        if (!w.hosts[o]) continue;
        const seg = html("span", null, o);
        seg.style.width = ((100 * w.hosts[o]) / Math.max(1, w.hosts.total)).toFixed(2) + "%";
        seg.title = `${w.hosts[o]} ${o}`;
        bar.append(seg);
      }
      box.append(bar);
      const meta = html("div", null, "meta");
      meta.append(document.createTextNode(`this wave: ${OUTCOMES.map((o) => `${num(w.hosts[o])} ${o}`).join(" · ")}`));
      if (w.deadline_ms) meta.append(document.createTextNode(`; deadline ${new Date(w.deadline_ms).toLocaleTimeString()}`));
      box.append(meta);
      if (w.gate_reason) box.append(html("div", `gate: ${w.gate_reason}`, "meta down"));
    }
    const all = html("div", null, "meta");
    all.append(document.createTextNode("all waves: "));
    OUTCOMES.forEach((o, i) => {
      const n = html("span", num(r.hosts[o]));
      n.dataset.all = o;
      all.append(n, document.createTextNode(` ${o}` + (i < OUTCOMES.length - 1 ? " · " : "")));
    });
    all.append(document.createTextNode(` of ${num(r.hosts.total)} hosts`));
    box.append(all);
    if (r.status_reason) box.append(html("div", r.status_reason, "meta"));
    return box;
  }

  function renderRollouts(p) {
    const root = document.getElementById("rollouts");
    root.replaceChildren();
    root.dataset.source = p.source;
    if (p.source === "not_installed") {
      root.append(html("p", "The rollout plugin (foreman_pvc) is not installed in Foreman: no rollouts to show.", "muted"));
      return;
    }
    if (p.source === "unavailable") {
      root.append(html("p", `Rollouts could not be read: ${p.error}`, "down"));
      return;
    }
    if (!p.rollouts.length) {
      root.append(html("p", "No rollout running, paused or finished in the last hour.", "muted"));
      return;
    }
    const list = html("div", null, "rollouts");
    for (const r of p.rollouts) list.append(rolloutBox(r));
    root.append(list);
  }

  function lastHour(series) {
    const n = series.scheduled.length;
    let sum = 0;
    for (let i = Math.max(0, n - 60); i < n; i++) sum += series.scheduled[i] + series.forced[i] + series.converge[i];
    return sum;
  }

  function render(s) {
    field("history_minutes", String(s.history_minutes));
    const charts = document.getElementById("pool-charts");
    charts.replaceChildren();
    for (const p of s.pools) {
      const fig = html("figure");
      fig.dataset.pool = p.name;
      fig.appendChild(html("figcaption", `${p.name}: ${num(p.hosts)} hosts, ${p.servers.length} servers, ${(p.run_rate * 60).toFixed(1)} runs/min admissible, ${num(lastHour(p.runs_per_minute))} runs in the last hour`));
      fig.appendChild(runChart(p.runs_per_minute, `runs per minute in pool ${p.name}`));
      charts.appendChild(fig);
    }

    const target = s.servers.length ? s.servers[0].target_utilization : null;
    field("target", pct(target));
    const servers = document.getElementById("servers");
    servers.replaceChildren();
    for (const srv of s.servers) {
      const row = html("div", null, "server");
      row.dataset.server = srv.name;
      row.appendChild(html("div", srv.name, "name"));
      row.appendChild(utilBar(srv.utilization, srv.target_utilization));
      const meta = html("div", null, "meta");
      if (!srv.up) meta.appendChild(html("span", "DOWN ", "down"));
      meta.appendChild(document.createTextNode(`pool ${srv.pool} · ${pct(srv.utilization)} of ${srv.jrubies} JRubies (target ${pct(srv.target_utilization)}) · ${(srv.run_rate * 60).toFixed(1)} runs/min admissible · ${srv.run_cost.toFixed(1)} JRuby-s/run · ${num(lastHour(srv.runs_per_minute))} runs last hour`));
      row.appendChild(meta);
      servers.appendChild(row);
    }

    const r = s.runs;
    for (const k of ["granted_total", "granted_schedule", "granted_file_change", "granted_converge", "cached_catalog", "forced_over_budget", "polls", "reports"]) field("runs." + k, num(r[k]));
    field("runs.forced_share", pct(r.forced_share));
    field("runs.forced_share_last_hour", pct(r.forced_share_last_hour));

    const f = s.fairness;
    field("fairness.max_interval", secs(f.max_interval_secs));
    field("fairness.hosts", num(f.hosts));
    field("fairness.since_run.beyond_max_interval", num(f.since_run.beyond_max_interval));
    field("fairness.since_run.never", num(f.since_run.never));
    field("fairness.since_run.percentiles", [f.since_run.p50_secs, f.since_run.p90_secs, f.since_run.p99_secs].map(secs).join(" / "));
    field("fairness.since_run.max_secs", secs(f.since_run.max_secs));
    field("fairness.since_success.beyond_max_interval", num(f.since_success.beyond_max_interval));
    field("fairness.success_sources", `${num(f.success_from_reports)} / ${num(f.success_estimated)}`);
    document.getElementById("fair-run").replaceChildren(ageChart(f.since_run, f.max_interval_secs, "run"));
    document.getElementById("fair-success").replaceChildren(ageChart(f.since_success, f.max_interval_secs, "success"));
    const cycles = new Map(s.pools.map((p) => [p.name, p]));
    const fairRows = document.querySelector("#fair-pools tbody");
    fairRows.replaceChildren();
    for (const p of f.pools) {
      const tr = html("tr");
      const pool = cycles.get(p.pool);
      tr.append(html("td", p.pool), html("td", num(p.hosts), "num"), html("td", num(p.beyond_max_interval), "num"), html("td", num(p.never_ran), "num"),
        html("td", pool ? (pool.cycle_secs === null ? "no capacity" : secs(pool.cycle_secs)) : "default pool", "num"),
        html("td", pool && pool.shortage ? "SHORTAGE" : "no", pool && pool.shortage ? "down" : ""));
      fairRows.appendChild(tr);
    }

    const g = f.hostgroups;
    field("fairness.hostgroups.total", num(g.total));
    field("fairness.hostgroups.with_hosts_beyond", num(g.with_hosts_beyond));
    const groupRows = document.querySelector("#fair-hostgroups tbody");
    groupRows.replaceChildren();
    const pair = (a, b) => `${secs(a)} / ${secs(b)}`;
    for (const h of g.worst) {
      const tr = html("tr");
      tr.dataset.hostgroup = h.hostgroup;
      tr.append(html("td", h.hostgroup), html("td", num(h.hosts), "num"),
        html("td", num(h.beyond_max_interval), "num" + (h.beyond_max_interval ? " down" : "")), html("td", num(h.never_ran), "num"),
        html("td", pair(h.since_run_p50_secs, h.since_run_p90_secs), "num"), html("td", secs(h.since_run_max_secs), "num"),
        html("td", pair(h.since_success_p50_secs, h.since_success_p90_secs), "num"));
      groupRows.appendChild(tr);
    }
    const more = document.getElementById("fair-hostgroups-more");
    more.hidden = !g.more;
    more.textContent = g.more ? `${num(g.more)} more hostgroups, none worse than the last row` : "";

    renderRollouts(s.rollouts);

    field("converges.count", num(s.converges.length));
    const converges = document.getElementById("converges");
    converges.replaceChildren();
    if (!s.converges.length) converges.appendChild(html("p", "none", "muted"));
    for (const c of s.converges) {
      const box = html("div");
      box.dataset.converge = String(c.id);
      box.appendChild(html("div", `#${c.id}: ${c.finished} of ${c.hosts} finished, ${c.started} started; deadline ${new Date(c.deadline_ms).toLocaleTimeString()}, estimated ${new Date(c.estimated_finish_ms).toLocaleTimeString()}`));
      const bar = html("div", null, "progress");
      const fill = html("span");
      fill.style.width = (c.hosts ? (100 * c.finished) / c.hosts : 100).toFixed(1) + "%";
      bar.appendChild(fill);
      box.appendChild(bar);
      converges.appendChild(box);
    }

    const e = s.enc;
    field("enc.requests_per_sec", e.requests_per_sec === null ? "–" : e.requests_per_sec.toFixed(2));
    field("enc.hit_ratio", pct(e.hit_ratio));
    for (const k of ["hits", "misses", "loads", "stale_served"]) field("enc." + k, num(e[k]));
    const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) + " ms" : v.toFixed(0) + " ms");
    const lat = e.latency;
    field("enc.latency.mean", lat ? ms(lat.mean_ms) : "not timed");
    field("enc.latency.percentiles", lat ? `${ms(lat.p50_ms)} / ${lat.p99_ms === null && lat.requests ? "> 10 s" : ms(lat.p99_ms)}` : "–");

    field("replicas.count", num(s.replicas.length));
    field("replicas.max_lag", bytes(s.replica_max_lag_bytes));
    const reps = document.querySelector("#replicas tbody");
    reps.replaceChildren();
    for (const rep of s.replicas) {
      const tr = html("tr");
      tr.dataset.replica = rep.label;
      const state = rep.usable ? "in rotation" : rep.up ? "up, out of rotation" : "DOWN";
      tr.append(html("td", rep.label), html("td", state, rep.usable ? "" : "down"), html("td", `${rep.lag_bytes === null ? "–" : bytes(rep.lag_bytes)} / ${bytes(s.replica_max_lag_bytes)}`, "num" + (rep.lag_bytes > s.replica_max_lag_bytes ? " down" : "")), html("td", num(rep.reads), "num"));
      reps.appendChild(tr);
    }

    field("outbox.pending", s.outbox ? num(s.outbox.pending) : "not forwarding");
    field("outbox.dead", s.outbox ? num(s.outbox.dead) : "–");
    field("outbox.oldest_secs", s.outbox ? secs(s.outbox.oldest_secs) : "–");
    field("spool.records", s.spool ? num(s.spool.records) : "no spool");
    field("spool.bytes", s.spool ? bytes(s.spool.bytes) : "–");

    const bad = s.pools.some((p) => p.shortage) || s.servers.some((x) => !x.up) || s.replicas.some((x) => !x.usable) ||
      s.rollouts.paused_by_failures > 0;
    const badge = document.getElementById("state");
    badge.textContent = bad ? "attention" : "ok";
    badge.className = "badge " + (bad ? "bad" : "ok");
    document.getElementById("updated").textContent = "as of " + new Date(s.generated_ms).toLocaleTimeString();
  }

  async function poll() {
    try {
      const response = await fetch("stats", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const s = await response.json();
      render(s);
      updates++;
      document.body.dataset.updates = String(updates);
      if (s.refresh_secs > 0) period = s.refresh_secs * 1000;
    } catch (error) {
      const badge = document.getElementById("state");
      badge.textContent = "unreachable: " + error.message;
      badge.className = "badge bad";
    }
    setTimeout(poll, period);
  }
  poll();
})();
