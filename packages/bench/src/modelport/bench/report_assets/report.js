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

  function latencyChart() {
    const box = document.getElementById("latency-chart");
    box.replaceChildren();
    const timed = visible().filter((e) => e.latency_ms).sort((a, b) => a.latency_ms.median - b.latency_ms.median);
    if (!timed.length) { box.append(el("p", {}, "No backend was timed.")); return; }
    const meds = timed.map((e) => e.latency_ms.median), p90s = timed.map((e) => e.latency_ms.p90);
    const lo = Math.min(...meds), hi = Math.max(...p90s);
    const log = Math.max(...meds) / lo > 10;  // one slow backend must not squash the rest
    const W = 900, L = 230, R = 60, row = 26, H = timed.length * row + 40;
    const x = log ? (v) => L + (Math.log10(v) - Math.log10(lo / 1.5)) / (Math.log10(hi * 1.2) - Math.log10(lo / 1.5)) * (W - L - R)
                  : (v) => L + v / (hi * 1.1) * (W - L - R);
    const svg = svgEl("svg", { width: W, height: H, role: "img", "aria-label": "latency chart" });
    timed.forEach((e, i) => {
      const y = 10 + i * row;
      svg.append(svgEl("text", { x: L - 6, y: y + 15, "text-anchor": "end" }, label(e, timed)));
      svg.append(svgEl("rect", { x: L, y: y + 3, width: Math.max(1, x(e.latency_ms.median) - L), height: row - 8, fill: "var(--bar)" }));
      svg.append(svgEl("line", { x1: x(e.latency_ms.median), x2: x(e.latency_ms.p90), y1: y + row / 2, y2: y + row / 2, stroke: "#222" }));
      svg.append(svgEl("text", { x: x(e.latency_ms.p90) + 4, y: y + 15 }, fmt(e.latency_ms.median) + " ms"));
    });
    svg.append(svgEl("text", { x: L, y: H - 8 }, "bar: median, whisker: p90" + (log ? " (log scale: the slowest is over 10x the fastest)" : "")));
    box.append(svg);
  }

  function agreementChart() {
    const box = document.getElementById("agreement-chart");
    box.replaceChildren();
    const agreed = visible().filter((e) => e.agreement && e.key !== report.reference);
    if (!agreed.length) { box.append(el("p", {}, "No agreement numbers (no reference, or nothing else ran).")); return; }
    const f = report.floors || {};
    const floorLines = [["INT8 cosine min floor", f.int8_cosine_min], ["INT8 cosine mean floor", f.int8_cosine_mean_min], ["FP cosine floor", f.fp_cosine_min]]
      .filter(([, v]) => typeof v === "number");
    const lo = Math.min(...agreed.map((e) => e.agreement.cosine_min), ...floorLines.map(([, v]) => v)) - 0.01;
    const W = 900, L = 230, R = 40, row = 26, H = agreed.length * row + 60;
    const x = (v) => L + (v - lo) / (1.0005 - lo) * (W - L - R);
    const svg = svgEl("svg", { width: W, height: H, role: "img", "aria-label": "agreement chart" });
    agreed.forEach((e, i) => {
      const y = 10 + i * row, a = e.agreement;
      svg.append(svgEl("text", { x: L - 6, y: y + 15, "text-anchor": "end" }, label(e, agreed)));
      svg.append(svgEl("rect", { x: L, y: y + 4, width: Math.max(1, x(a.cosine_mean) - L), height: row - 10, fill: "var(--mean)" }));
      svg.append(svgEl("circle", { cx: x(a.cosine_min), cy: y + row / 2, r: 5, fill: "var(--min)" }));
    });
    floorLines.forEach(([name, v], i) => {
      svg.append(svgEl("line", { x1: x(v), x2: x(v), y1: 4, y2: H - 40, stroke: "#888", "stroke-dasharray": "4 3" }));
      const right = x(v) > W - 160;  // keep the label inside the chart
      svg.append(svgEl("text", { x: right ? x(v) - 3 : x(v) + 3, y: H - 28 + (i % 2) * 12, "font-size": 11,
        "text-anchor": right ? "end" : "start" }, name + " " + v));
    });
    svg.append(svgEl("text", { x: L, y: H - 4 }, "bar: cosine mean, dot: cosine min, per image vs the reference"));
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
