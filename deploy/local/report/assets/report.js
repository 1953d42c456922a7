/* The drilldown report's behaviour: histogram heatmaps with quantiles and exemplar links (uPlot), the trace
 * waterfall, and each span's RED series from the span metrics. Reads only the JSON embedded in the page. */
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"];
  const KNOWN_ORDER = ["gateway", "orchestrator", "inference"];
  const services = [...new Set([...KNOWN_ORDER, ...data.services, ...data.histograms.map((h) => h.service)])];
  const serviceColor = (name) => PALETTE[services.indexOf(name) % PALETTE.length];
  const QUANTILE_STYLE = {
    p50: { stroke: "#0b57d0", width: 2 },
    p95: { stroke: "#7b1fa2", width: 2 },
    p99: { stroke: "#111827", width: 1.6, dash: [6, 3] },
  };
  // light enough under the quantile lines: cream to orange to brick, never near-black
  const HEAT = [[255, 244, 224], [253, 190, 120], [240, 120, 60], [196, 60, 40]];
  const NICE = new Set([1, 2.5, 5]); // the bucket bounds that get a grid line and a label
  const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  const charts = [];

  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "style") Object.assign(node.style, value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };

  function seconds(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    if (s < 1e-3) return `${Math.round(s * 1e6)} µs`;
    if (s < 0.01) return `${(s * 1e3).toFixed(1)} ms`;
    if (s < 1) return `${Math.round(s * 1e3)} ms`;
    return `${s.toFixed(2)} s`;
  }
  const perSecond = (r) => (r === null || r === undefined ? "–" : `${r < 0.1 ? r.toFixed(3) : r < 10 ? r.toFixed(2) : r.toFixed(1)}/s`);
  const clock = (t) => new Date(t * 1e3).toISOString().slice(11, 19);

  function heatColor(x) {
    const f = Math.min(1, Math.max(0, x)) * (HEAT.length - 1);
    const i = Math.min(HEAT.length - 2, Math.floor(f));
    const a = HEAT[i], b = HEAT[i + 1], t = f - i;
    return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * t)).join(",")})`;
  }

  // ---- request-duration heatmaps, quantiles and exemplars -------------------------------------------------

  function histogramBlock(h) {
    const bounds = h.bounds.map(Number);
    // the first bucket has no lower bound: draw it down to its smallest exemplar
    const floor = Math.min(bounds[0] / 2, ...h.exemplars.filter((e) => e[1] > 0 && e[1] <= bounds[0]).map((e) => e[1] / 1.2));
    const lower = bounds.map((b, j) => (j === 0 ? floor : bounds[j - 1]));
    const upper = bounds.map((b, j) => (isFinite(b) ? b : lower[j] * 2));
    let max = 0;
    h.rates.forEach((row) => row.forEach((v) => { if (v > max) max = v; }));
    let lo = Infinity, hi = 0;
    const widen = (v) => { if (v > 0 && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } };
    h.rates.forEach((row, j) => { if (row.some((v) => v > 0)) { widen(lower[j]); widen(upper[j]); } });
    h.exemplars.forEach((e) => widen(e[1]));
    Object.values(h.quantiles).forEach((s) => s.forEach(widen));
    if (!isFinite(lo)) { lo = 0.001; hi = 1; }
    lo /= 1.25; hi *= 1.25;

    const q = h.windowQuantiles;
    const head = el("div", { class: "histogram-head" },
      el("h3", {}, el("span", { class: "swatch", style: { background: serviceColor(h.service) } }), h.service),
      el("span", { class: "mono" }, `${h.metric}`),
      el("span", { class: "figures" },
        `${h.requests === null ? "–" : Math.round(h.requests)} requests · p50 ${seconds(q.p50)} · p95 ${seconds(q.p95)} · ` +
        `p99 ${seconds(q.p99)} · ${h.exemplars.length} exemplars`),
      el("span", { class: "heat-scale" }, "0",
        el("i", { style: { background: `linear-gradient(90deg, ${[0, 0.33, 0.66, 1].map(heatColor).join(",")})` } }),
        `${perSecond(max)} per bucket`));
    const chartBox = el("div", { class: "chart" });
    const readout = el("div", { class: "readout" }, "\u00a0");
    const block = el("div", { class: "histogram", id: `histogram-${h.service}`, dataset: { service: h.service } }, head, readout, chartBox);
    document.getElementById("histogram-list").append(block);
    if (!h.exemplars.length && max === 0) {
      chartBox.append(el("p", { class: "note" }, "No request in this window."));
      return;
    }

    const times = data.times, step = data.step;
    const anchors = h.exemplars.map(([t, v, id, le]) => {
      const embedded = id in data.traces, missing = data.missing.includes(id);
      const where = embedded ? "click to open its trace" : missing ? "Jaeger returned no trace" : "opens in Jaeger";
      const a = el("a", {
        class: `exemplar${missing ? " missing" : ""}`,
        href: embedded || missing ? `#trace-${id}` : `${data.jaeger}/api/v3/traces/${id}`,
        title: `${h.service}: ${seconds(v)} in bucket le=${le} at ${clock(t)} UTC\ntrace ${id}\n${where}`,
        "aria-label": `exemplar ${seconds(v)} at ${clock(t)} UTC, trace ${id}`,
        dataset: { traceId: id, service: h.service, t: String(t), v: String(v) },
      });
      a.addEventListener("mousedown", (ev) => ev.stopPropagation()); // a click, not the start of a zoom
      return a;
    });

    const drawHeat = (u) => {
      const ctx = u.ctx;
      ctx.save();
      ctx.beginPath();
      ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
      ctx.clip();
      h.rates.forEach((row, j) => {
        const y0 = u.valToPos(lower[j], "y", true), y1 = u.valToPos(upper[j], "y", true);
        row.forEach((v, i) => {
          if (!(v > 0)) return;
          const x0 = u.valToPos(times[i] - step, "x", true), x1 = u.valToPos(times[i], "x", true);
          ctx.fillStyle = heatColor(Math.sqrt(v / max) * 0.85 + 0.15);
          ctx.fillRect(x0, y1, Math.max(1, x1 - x0 - 1), Math.max(1, y0 - y1 - 1));
        });
      });
      ctx.restore();
    };
    // the heatmap cell under the cursor, in words
    const cellAt = (u) => {
      const { left, top } = u.cursor;
      if (left === undefined || left < 0) return "\u00a0";
      const t = u.posToVal(left, "x"), v = u.posToVal(top, "y");
      const i = times.findIndex((end) => t > end - step && t <= end);
      const j = bounds.findIndex((b, k) => v > lower[k] && v <= upper[k]);
      if (i < 0 || j < 0) return "\u00a0";
      const range = isFinite(bounds[j]) ? `${seconds(lower[j])} – ${seconds(bounds[j])}` : `over ${seconds(lower[j])}`;
      return `${clock(times[i] - step)}–${clock(times[i])} UTC · ${range}: ${perSecond(h.rates[j][i] ?? 0)} in this bucket`;
    };
    const placeExemplars = (u) => {
      const width = u.over.clientWidth, height = u.over.clientHeight;
      for (const a of anchors) {
        const x = u.valToPos(Number(a.dataset.t), "x"), y = u.valToPos(Number(a.dataset.v), "y");
        a.classList.toggle("hidden", !(x >= 0 && x <= width && y >= 0 && y <= height));
        a.style.left = `${x}px`;
        a.style.top = `${y}px`;
      }
    };
    const gridBounds = bounds.filter((b) => isFinite(b) && NICE.has(Number((b / 10 ** Math.floor(Math.log10(b) + 1e-9)).toPrecision(3))));
    const opts = {
      width: Math.max(400, chartBox.clientWidth),
      height: 250,
      tzDate: utc,
      scales: {
        x: { time: true, range: (u, min, max) => [min === times[0] ? min - step : min, max] },
        y: { distr: 3, range: () => [lo, hi] },
      },
      axes: [
        { space: 80, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600], values: (u, splits) => splits.map((t) => clock(t)) },
        {
          size: 62,
          ticks: { show: false },
          splits: (u) => gridBounds.filter((b) => b >= u.scales.y.min && b <= u.scales.y.max),
          filter: (u, splits) => splits, // keep 2.5 and 5 too (a log axis keeps powers of ten only)
          values: (u, splits) => {
            let last = -Infinity;
            return splits.map((v) => {
              if (v === null) return "";
              const y = u.valToPos(v, "y");
              if (Math.abs(y - last) < 15) return "";
              last = y;
              return seconds(v);
            });
          },
        },
      ],
      series: [
        { value: (u, t) => (t === null ? "–" : `${clock(t)} UTC`) },
        ...Object.keys(h.quantiles).map((name) => ({
          label: name, ...QUANTILE_STYLE[name], points: { show: false }, spanGaps: false,
          value: (u, v) => seconds(v),
        })),
      ],
      hooks: { drawClear: [drawHeat], draw: [placeExemplars], setCursor: [(u) => { readout.textContent = cellAt(u); }] },
    };
    const u = new uPlot(opts, [times, ...Object.values(h.quantiles)], chartBox);
    u.over.append(...anchors);
    placeExemplars(u);
    charts.push({ u, box: chartBox, height: 250 });
  }

  // ---- the trace waterfall with each span's RED series -----------------------------------------------------

  const operations = new Map(data.operations.map((o) => [`${o.service}\u001f${o.name}\u001f${o.kind}`, o]));
  let sparkCharts = [];

  function spark(box, series, colors, extra) {
    // x: where the operation has data (and this span), so a short load is not a spike at the edge
    const times = data.times.filter((t, i) => series.some((s) => s[i] !== null));
    const first = Math.min(times[0] ?? data.times[0], extra ? extra.t : Infinity) - data.step;
    const last = Math.max(times[times.length - 1] ?? data.times[data.times.length - 1], extra ? extra.t : -Infinity);
    const opts = {
      width: 128, height: 34, tzDate: utc, legend: { show: false }, cursor: { show: false },
      scales: { x: { time: true, range: () => [first, last + data.step / 2] },
                y: { range: (u, min, max) => [0, Math.max(max || 0, extra ? extra.v : 0, 1e-9) * 1.15] } },
      axes: [{ show: false }, { show: false }],
      series: [{}, ...colors.map((stroke, i) => ({
        stroke, width: 1.3, fill: i === 0 ? `${stroke}22` : undefined, points: { show: times.length < 12, size: 3 },
      }))],
      hooks: extra ? { draw: [(u) => {
        const x = u.valToPos(extra.t, "x", true), y = u.valToPos(extra.v, "y", true);
        u.ctx.save();
        u.ctx.fillStyle = extra.color; u.ctx.strokeStyle = "#1d2430"; u.ctx.lineWidth = devicePixelRatio;
        u.ctx.beginPath(); u.ctx.arc(x, y, 3 * devicePixelRatio, 0, 2 * Math.PI); u.ctx.fill(); u.ctx.stroke();
        u.ctx.restore();
      }] } : {},
    };
    sparkCharts.push(new uPlot(opts, [data.times, ...series], box));
  }

  function redCell(span, traceStart) {
    const [, serviceIndex, name, kind, startUs, durUs] = span;
    const service = data.services[serviceIndex];
    const op = operations.get(`${service}\u001f${name}\u001f${kind}`);
    if (!op) return el("td", { class: "red" }, el("span", { class: "note" }, "no span-metrics series for this operation"));
    const errors = op.totalErrors || 0;
    const share = op.totalCalls ? errors / op.totalCalls : 0;
    const figures = el("div", { class: "red-figures" },
      el("b", {}, `${Math.round(op.totalCalls || 0)}`), " calls · ",
      el("span", { class: errors > 0 ? "bad" : "" }, `${(share * 100).toFixed(share > 0 && share < 0.01 ? 2 : 0)}% errors`),
      " · p95 ", el("b", {}, seconds(op.windowP95)));
    const rate = el("div", { title: `${service} ${name}: calls per second (errors in red), from the span metrics` });
    const duration = el("div", { title: `${service} ${name}: p50 and p95 duration; the dot is this span (${seconds(durUs / 1e6)})` });
    const cell = el("td", { class: "red", dataset: { operation: `${service} ${name}` } }, figures,
      el("div", { class: "sparks" },
        el("div", {}, el("div", { class: "spark-label" }, "rate · errors"), rate),
        el("div", {}, el("div", { class: "spark-label" }, "p50 · p95 · this span"), duration)));
    requestAnimationFrame(() => {
      spark(rate, [op.calls, op.errors], [serviceColor(service), "#d62728"]);
      spark(duration, [op.p50, op.p95], ["#1b5e9e", "#6a3d9a"],
        { t: traceStart + (startUs + durUs) / 1e6, v: durUs / 1e6, color: serviceColor(service) });
    });
    return cell;
  }

  function showTrace(id) {
    const view = document.getElementById("trace-view");
    sparkCharts.forEach((c) => c.destroy());
    sparkCharts = [];
    for (const a of document.querySelectorAll("a.exemplar")) a.classList.toggle("selected", a.dataset.traceId === id);
    if (!id) return;
    const trace = data.traces[id];
    const jaegerLink = el("a", { href: `${data.jaeger}/api/v3/traces/${id}` }, "Jaeger's JSON (while the stack runs)");
    if (!trace) {
      view.replaceChildren(el("p", { class: "note" }, `Trace ${id}: `,
        data.missing.includes(id) ? "Jaeger returned no such trace when the report was made." : "not embedded in this report; ",
        data.missing.includes(id) ? "" : jaegerLink));
      return;
    }
    const spans = trace.spans;
    const children = spans.map(() => []);
    const roots = [];
    spans.forEach((s, i) => (s[0] >= 0 ? children[s[0]].push(i) : roots.push(i)));
    const order = [];
    const walk = (i, depth) => { order.push([i, depth]); children[i].forEach((c) => walk(c, depth + 1)); };
    roots.forEach((r) => walk(r, 0));
    const total = Math.max(...spans.map((s) => s[4] + s[5]), 1);
    const inTrace = [...new Set(spans.map((s) => data.services[s[1]]))].sort((a, b) => services.indexOf(a) - services.indexOf(b));

    const ticks = el("div", { class: "ticks" },
      ...[0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { style: { left: `${f * 100}%` } }, f ? seconds((total * f) / 1e6) : "0")));
    const table = el("table", { class: "waterfall" },
      el("colgroup", {}, el("col", { class: "name" }), el("col", { class: "timeline" }), el("col", { class: "red" })),
      el("thead", {}, el("tr", {}, el("th", {}, "Span"), el("th", {}, ticks), el("th", {}, "Span metrics of its operation (window)"))));
    const body = el("tbody");
    for (const [i, depth] of order) {
      const span = spans[i];
      const [, serviceIndex, name, kind, startUs, durUs, error, attrs] = span;
      const service = data.services[serviceIndex];
      const color = serviceColor(service);
      const left = (startUs / total) * 100, width = (durUs / total) * 100;
      // the duration beside its bar: after it, else before it, else inside it
      const place = left + width <= 80 ? { left: `${left + width + 0.8}%` }
        : left >= 14 ? { right: `${100 - left + 0.8}%` } : { right: `${100 - left - width + 0.8}%`, color: "#fff" };
      const label = el("span", { class: "bar-label", style: place }, seconds(durUs / 1e6));
      body.append(el("tr", { class: "span", dataset: { service, name, kind } },
        el("td", {},
          el("div", { class: "span-name", style: { paddingLeft: `${depth * 14}px` }, title: `${service} · ${name} · ${kind}` },
            el("span", { class: "service", style: { background: color } }, service),
            el("span", {}, name), error ? el("span", { class: "err", title: "status ERROR" }, "✗") : null),
          Object.keys(attrs).length
            ? el("div", { class: "attrs", style: { paddingLeft: `${depth * 14}px` } },
                ...Object.entries(attrs).map(([k, v]) => el("span", {}, `${k}=${v}`)))
            : null),
        el("td", {}, el("div", { class: "bar-track" },
          el("div", { class: `bar${error ? " error" : ""}`, style: { left: `${left}%`, width: `${width}%`, background: color } }), label)),
        redCell(span, trace.start)));
    }
    table.append(body);
    const head = el("div", { class: "trace-head" },
      el("h3", {}, "trace_id ", el("span", { class: "mono", id: "trace-id" }, id)),
      el("span", {}, `${seconds(total / 1e6)} · ${spans.length} spans · started ${clock(trace.start)} UTC`
        + (id === data.slowest ? " · the slowest exemplar" : "")),
      el("span", { class: "legend" }, ...inTrace.map((s) => el("span", {}, el("span", { class: "swatch", style: { background: serviceColor(s) } }), s))),
      jaegerLink);
    view.replaceChildren(head, table);
    view.dataset.traceId = id;
  }

  function route(scroll) {
    const match = /^#trace-([0-9a-f]{32})$/.exec(location.hash);
    showTrace(match ? match[1] : data.slowest);
    if (scroll) document.getElementById("trace").scrollIntoView({ block: "start" });
  }

  try {
    data.histograms.forEach(histogramBlock);
    route(false);
    window.addEventListener("hashchange", () => route(true));
    window.addEventListener("resize", () => {
      for (const c of charts) c.u.setSize({ width: Math.max(400, c.box.clientWidth), height: c.height });
    });
  } catch (err) {
    document.body.prepend(el("p", { class: "note", style: { color: "#d62728" } }, `The report failed to render: ${err}`));
    throw err;
  }
  requestAnimationFrame(() => {
    performance.mark("report-rendered");
    const ms = performance.getEntriesByName("report-rendered")[0].startTime;
    document.getElementById("footer").textContent =
      `Rendered in ${Math.round(ms)} ms by uPlot. ${Object.keys(data.traces).length} traces embedded; ` +
      `Prometheus ${data.prometheus}, Jaeger ${data.jaeger}.`;
    document.documentElement.dataset.ready = "true";
  });
})();
