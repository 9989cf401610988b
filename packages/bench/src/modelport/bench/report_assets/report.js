"use strict";
// Renders the embedded report JSON: no network, no libraries.
(function () {
  const errors = document.getElementById("errors");
  function showError(msg) { errors.hidden = false; errors.textContent += msg + "\n"; }
  window.addEventListener("error", (e) => showError("script error: " + e.message));

  const report = JSON.parse(document.getElementById("report-data").textContent);
  const rows = report.results;
  const deviceOf = (e) => e.device_key || (report.machine && report.machine.device_key) || "this machine";
  const modelOf = (e) => e.model || report.model || "model";
  const state = { device: "all", model: "all" };

  const el = (tag, attrs = {}, text) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const svgEl = (tag, attrs = {}, text) => {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const mb = (b) => (b ? (b / 1e6).toFixed(2) + " MB" : "–");

  function machineLine() {
    const m = report.machine || {};
    const parts = [m.cpu, m.cores && m.cores + " cores", m.memory_gb && m.memory_gb + " GB", m.os, m.python && "Python " + m.python];
    document.getElementById("machine").textContent = "Reported on: " + parts.filter(Boolean).join(", ");
  }

  function views() {
    const nav = document.getElementById("views");
    for (const [key, of] of [["device", deviceOf], ["model", modelOf]]) {
      const values = [...new Set(rows.map(of))].sort();
      if (values.length < 2) continue;
      const label = el("label", {}, key + ": ");
      const select = el("select", { id: "view-" + key });
      select.append(el("option", { value: "all" }, "all (" + values.length + ")"));
      for (const v of values) select.append(el("option", { value: v }, v));
      select.addEventListener("change", () => { state[key] = select.value; draw(); });
      label.append(select);
      nav.append(label);
    }
  }

  function visible() {
    return rows.filter((e) => (state.device === "all" || deviceOf(e) === state.device)
      && (state.model === "all" || modelOf(e) === state.model));
  }

  const det = (e) => (e.agreement && e.agreement.detect) || null;
  const cls = (e) => (e.agreement && !e.agreement.detect ? e.agreement : null);

  // [title, cell text, sort value, numeric]
  const COLUMNS = [
    ["backend", (e) => e.name, (e) => e.name],
    ["status", (e) => e.status, (e) => e.status],
    ["device", deviceOf, deviceOf],
    ["model", modelOf, modelOf],
    ["median ms", (e) => fmt(e.latency_ms && e.latency_ms.median), (e) => e.latency_ms ? e.latency_ms.median : Infinity, true],
    ["p90 ms", (e) => fmt(e.latency_ms && e.latency_ms.p90), (e) => e.latency_ms ? e.latency_ms.p90 : Infinity, true],
    ["FPS", (e) => fmt(e.fps, 1), (e) => e.fps || 0, true],
    ["best FPS @ concurrency", (e) => (e.best_fps ? fmt(e.best_fps, 1) + " @ " + e.best_concurrency : "–"), (e) => e.best_fps || 0, true],
    ["frame ms", (e) => fmt(e.frame_ms && e.frame_ms.total), (e) => (e.frame_ms ? e.frame_ms.total : Infinity), true],
    ["speed vs ref", (e) => (e.relative_speed ? fmt(e.relative_speed) + "x" : "–"), (e) => e.relative_speed || 0, true],
    ["size", (e) => mb(e.size_bytes), (e) => e.size_bytes || 0, true],
    ["top-1 agreement", (e) => (cls(e) ? Math.round(e.agreement.top1 * 100) + "% of " + e.agreement.images : "–"),
      (e) => (cls(e) ? e.agreement.top1 : -1), true],
    ["cosine min", (e) => fmt(cls(e) && e.agreement.cosine_min, 4), (e) => (cls(e) ? e.agreement.cosine_min : -2), true],
    ["cosine mean", (e) => fmt(cls(e) && e.agreement.cosine_mean, 4), (e) => (cls(e) ? e.agreement.cosine_mean : -2), true],
    // a detector's verdict: its boxes against the source's, COCO mAP, and decode + NMS apart from the model
    ["boxes F1 vs source", (e) => fmt(det(e) && det(e).f1, 3), (e) => (det(e) ? det(e).f1 : -1), true],
    ["mAP", (e) => fmt(det(e) && det(e).map, 3), (e) => (det(e) && det(e).map !== null ? det(e).map : -1), true],
    ["AP50", (e) => fmt(det(e) && det(e).ap50, 3), (e) => (det(e) && det(e).ap50 !== null ? det(e).ap50 : -1), true],
    ["postprocess ms", (e) => fmt(e.postprocess_ms && e.postprocess_ms.median), (e) => (e.postprocess_ms ? e.postprocess_ms.median : Infinity), true],
    ["headline top-1", (e) => (e.headline ? e.headline.label + " (" + fmt(e.headline.confidence, 3) + ")" : "–"), (e) => (e.headline ? e.headline.label : "")],
  ];
  let sort = { col: 4, dir: 1 };

  // device and model columns only where the results span several; a detector's columns only where there is one
  const BOXES = ["boxes F1 vs source", "mAP", "AP50", "postprocess ms"];
  const shown = COLUMNS.map(([title, text]) => (BOXES.includes(title) ? rows.some(det)
    : !["device", "model"].includes(title) || new Set(rows.map(text)).size > 1));

  function table() {
    const t = document.getElementById("results");
    const head = t.tHead, body = t.tBodies[0];
    head.replaceChildren();
    const tr = el("tr");
    COLUMNS.forEach(([title], i) => {
      if (!shown[i]) return;
      const th = el("th", { scope: "col" }, title);
      if (i === sort.col) th.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
      th.addEventListener("click", () => { sort = { col: i, dir: sort.col === i ? -sort.dir : 1 }; draw(); });
      tr.append(th);
    });
    head.append(tr);
    const key = COLUMNS[sort.col][2];
    const list = visible().slice().sort((a, b) => {
      const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
    });
    body.replaceChildren();
    for (const e of list) {
      const r = el("tr", { "data-key": e.key, "data-status": e.status });
      COLUMNS.forEach(([title, text, , numeric], i) => {
        if (!shown[i]) return;
        const td = el("td", numeric ? { class: "num" } : {}, text(e));
        if (title === "status") {
          td.className = "status-" + e.status;
          if (e.reason) td.append(el("div", { class: "reason" }, e.reason));
          if (e.under_load) td.append(el("div", { class: "reason" }, "UNDER LOAD: " + e.under_load));
          if (e.unsteady) td.append(el("div", { class: "reason" }, "UNSTEADY: " + e.unsteady));
          if (e.sustained && e.sustained.flag) td.append(el("div", { class: "reason" }, "SUSTAINED RUN: " + e.sustained.flag));
          if (e.speed_note) td.append(el("div", { class: "reason" }, e.speed_note));
          if (e.agreement_note) td.append(el("div", { class: "reason" }, e.agreement_note));
          if (e.last_ok) td.append(el("div", { class: "reason" }, "last good result from " + e.last_ok.created_utc + " kept in " + e.last_ok.path));
        }
        r.append(td);
      });
      body.append(r);
    }
  }

  // A chart row's name, with the device and model where the rows span several.
  function label(e, shownRows) {
    const many = (of) => new Set(shownRows.map(of)).size > 1;
    return e.name + (many(deviceOf) ? " @ " + deviceOf(e) : "") + (many(modelOf) ? " (" + modelOf(e).split("@")[0] + ")" : "");
  }

  // Chart geometry that reads at a glance: the label column as wide as the longest label (measured in the
  // page's font, so no name is clipped), the plot as wide as the page allows.
  function textWidth(strings, size = 12) {
    const probe = svgEl("svg", { width: 0, height: 0, class: "chart" }), t = svgEl("text", { "font-size": size });
    probe.append(t);
    document.body.append(probe);
    let w = 0;
    for (const s of strings) { t.textContent = s; w = Math.max(w, t.getComputedTextLength() || s.length * 7); }
    probe.remove();
    return Math.ceil(w);
  }
  const chartWidth = (box) => Math.max(640, Math.min(1200, (box.clientWidth || 900) - 4));

  // Round tick values between lo and hi: 1, 2 or 5 times a power of ten apart, about n of them.
  function ticks(lo, hi, n = 6) {
    const raw = (hi - lo) / n, p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toFixed(10)));
    return { values: out, digits: Math.max(0, -Math.floor(Math.log10(step))) };
  }
  function logTicks(lo, hi) {
    const out = [];
    for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++)
      for (const m of [1, 2, 5]) { const v = m * Math.pow(10, k); if (v >= lo && v <= hi) out.push(v); }
    return { values: out, digits: Math.max(0, -Math.floor(Math.log10(lo))) };
  }
  function axis(svg, x, t, top, bottom, unit) {
    for (const v of t.values) {
      svg.append(svgEl("line", { x1: x(v), x2: x(v), y1: top, y2: bottom, stroke: "#e3e3e3" }));
      svg.append(svgEl("text", { x: x(v), y: bottom + 14, "text-anchor": "middle", class: "tick" }, v.toFixed(t.digits)));
    }
    if (unit) svg.append(svgEl("text", { x: x(t.values[t.values.length - 1]), y: bottom + 28, "text-anchor": "end", class: "tick" }, unit));
  }

  function latencyChart() {
    const box = document.getElementById("latency-chart");
    box.replaceChildren();
    const timed = visible().filter((e) => e.latency_ms).sort((a, b) => a.latency_ms.median - b.latency_ms.median);
    if (!timed.length) { box.append(el("p", {}, "No backend was timed.")); return; }
    const meds = timed.map((e) => e.latency_ms.median), p90s = timed.map((e) => e.latency_ms.p90);
    const lo = Math.min(...meds), hi = Math.max(...p90s);
    const log = Math.max(...meds) / lo > 10;  // one slow backend must not squash the rest
    const names = timed.map((e) => label(e, timed));
    const values = timed.map((e) => fmt(e.latency_ms.median) + " ms (p90 " + fmt(e.latency_ms.p90) + ")");
    // The values stand in their own column right of the plot: never on a whisker, always lined up.
    const W = chartWidth(box), L = textWidth(names) + 14, R = textWidth(values) + 20, row = 26, top = 8;
    const plotH = timed.length * row, H = top + plotH + 58;
    const x0 = log ? lo / 1.5 : 0, x1 = log ? hi * 1.2 : hi * 1.08;
    const x = log ? (v) => L + (Math.log10(v) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0)) * (W - L - R)
                  : (v) => L + (v - x0) / (x1 - x0) * (W - L - R);
    const svg = svgEl("svg", { width: W, height: H, role: "img", "aria-label": "latency chart" });
    axis(svg, x, log ? logTicks(x0, x1) : ticks(0, x1), top, top + plotH, "ms" + (log ? " (log scale)" : ""));
    timed.forEach((e, i) => {
      const y = top + i * row, mid = y + row / 2;
      svg.append(svgEl("text", { x: L - 8, y: mid + 4, "text-anchor": "end" }, names[i]));
      svg.append(svgEl("rect", { x: L, y: y + 4, width: Math.max(1, x(e.latency_ms.median) - L), height: row - 8, fill: "var(--bar)" }));
      svg.append(svgEl("line", { x1: x(e.latency_ms.median), x2: x(e.latency_ms.p90), y1: mid, y2: mid, stroke: "#222" }));
      svg.append(svgEl("line", { x1: x(e.latency_ms.p90), x2: x(e.latency_ms.p90), y1: mid - 5, y2: mid + 5, stroke: "#222" }));
      svg.append(svgEl("text", { x: W - R + 10, y: mid + 4, class: "value" }, values[i]));
    });
    svg.append(svgEl("text", { x: L, y: H - 6 }, "bar: median, whisker: p90" + (log ? " (log scale: the slowest is over 10x the fastest)" : "")));
    box.append(svg);
  }

  function agreementChart() {
    const box = document.getElementById("agreement-chart");
    box.replaceChildren();
    const agreed = visible().filter((e) => e.agreement && e.key !== report.reference);
    if (!agreed.length) { box.append(el("p", {}, "No agreement numbers (no reference, or nothing else ran).")); return; }
    const f = report.floors || {};
    const floorLines = [["FP cosine floor", f.fp_cosine_min], ["INT8 cosine mean floor", f.int8_cosine_mean_min], ["INT8 cosine min floor", f.int8_cosine_min]]
      .filter(([, v]) => typeof v === "number");
    // Cosines sit near 1: a bar from an axis that starts at 0.94 would make a 0.97 look half of a 1.0. Points on a
    // numbered axis (min and mean, joined) show the values without pretending to be lengths.
    const t = ticks(Math.min(...agreed.map((e) => e.agreement.cosine_min), ...floorLines.map(([, v]) => v)) - 0.005, 1, 6);
    const lo = Math.min(t.values[0], 1 - 1e-3), hi = 1;
    const names = agreed.map((e) => label(e, agreed));
    const values = agreed.map((e) => "min " + fmt(e.agreement.cosine_min, 4) + " · mean " + fmt(e.agreement.cosine_mean, 4));
    const W = chartWidth(box), L = textWidth(names) + 14, R = textWidth(values) + 20, row = 26;
    const top = 8 + floorLines.length * 15, plotH = agreed.length * row, H = top + plotH + 58;
    const x = (v) => L + 6 + (v - lo) / (hi - lo) * (W - L - R - 12);
    const svg = svgEl("svg", { width: W, height: H, role: "img", "aria-label": "agreement chart" });
    axis(svg, x, ticks(lo, hi, 6), top, top + plotH, "cosine similarity");
    floorLines.forEach(([name, v], i) => {  // each label on its own line above the plot: none covers another
      const right = x(v) > (L + W - R) / 2;
      svg.append(svgEl("line", { x1: x(v), x2: x(v), y1: 8 + i * 15 + 3, y2: top + plotH, stroke: "#888", "stroke-dasharray": "4 3" }));
      svg.append(svgEl("text", { x: right ? x(v) - 4 : x(v) + 4, y: 8 + i * 15 + 10, class: "tick", "text-anchor": right ? "end" : "start" }, name + " " + v));
    });
    agreed.forEach((e, i) => {
      const mid = top + i * row + row / 2, a = e.agreement;
      svg.append(svgEl("text", { x: L - 8, y: mid + 4, "text-anchor": "end" }, names[i]));
      svg.append(svgEl("line", { x1: x(a.cosine_min), x2: x(a.cosine_mean), y1: mid, y2: mid, stroke: "#999", "stroke-width": 2 }));
      svg.append(svgEl("circle", { cx: x(a.cosine_mean), cy: mid, r: 5, fill: "var(--mean)" }));
      svg.append(svgEl("circle", { cx: x(a.cosine_min), cy: mid, r: 5, fill: "var(--min)" }));
      svg.append(svgEl("text", { x: W - R + 10, y: mid + 4, class: "value" }, values[i]));
    });
    const legend = top + plotH + 44;
    svg.append(svgEl("circle", { cx: L + 5, cy: legend - 4, r: 5, fill: "var(--min)" }));
    svg.append(svgEl("text", { x: L + 14, y: legend }, "cosine min"));
    svg.append(svgEl("circle", { cx: L + 100, cy: legend - 4, r: 5, fill: "var(--mean)" }));
    svg.append(svgEl("text", { x: L + 109, y: legend }, "cosine mean, per image vs the reference (the axis starts at " + lo.toFixed(t.digits) + ", not 0)"));
    box.append(svg);
  }

  function matrix() {
    const models = [...new Set(rows.map(modelOf))].sort(), devices = [...new Set(rows.map(deviceOf))].sort();
    if (models.length < 2 && devices.length < 2) return;
    document.getElementById("matrix-section").hidden = false;
    const box = document.getElementById("matrix");
    box.replaceChildren();
    const backends = [...new Set(rows.map((e) => e.key))];
    for (const d of devices) {
      box.append(el("h3", {}, d));
      const t = el("table", { class: "matrix" });
      const hr = el("tr");
      hr.append(el("th", {}, "model"));
      backends.forEach((b) => hr.append(el("th", {}, b)));
      t.append(hr);
      for (const m of models) {
        const r = el("tr");
        r.append(el("th", {}, m));
        for (const b of backends) {
          const e = rows.find((x) => deviceOf(x) === d && modelOf(x) === m && x.key === b);
          const txt = !e ? "" : e.status !== "ok" ? e.status : (e.latency_ms ? fmt(e.latency_ms.median) + " ms" : "ok") +
            (e.agreement ? " / " + fmt(e.agreement.cosine_min, 4) : "");
          r.append(el("td", e ? { class: "status-" + e.status } : {}, txt));
        }
        t.append(r);
      }
      box.append(t);
    }
  }

  function sortableSections() {
    document.querySelectorAll("section.md table.sortable").forEach((t) => {
      t.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () => {
        const body = t.tBodies[0], dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        t.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        const val = (r) => { const s = r.cells[i] ? r.cells[i].textContent : ""; const n = parseFloat(s); return isNaN(n) ? s : n; };
        [...body.rows].sort((a, b) => (val(a) < val(b) ? -1 : val(a) > val(b) ? 1 : 0) * dir).forEach((r) => body.append(r));
      }));
    });
  }

  function draw() { table(); latencyChart(); agreementChart(); }

  try {
    machineLine();
    views();
    draw();
    matrix();
    sortableSections();
    document.body.setAttribute("data-rendered", String(rows.length));
  } catch (e) {
    showError("render failed: " + e.message);
  }
})();
