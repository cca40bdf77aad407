// Helpers every dashboard page shares: JSON from the same origin, DOM building, tables, charts
// (uPlot, vendored) and the admin token (kept in this tab's sessionStorage only).
"use strict";

const UI = (() => {
  const status = document.getElementById("status");

  function say(text, isError = false) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  // fetch JSON; resolves to {ok, status, body}; never throws on an HTTP error (the page shows it).
  async function api(path, options = {}) {
    const response = await fetch(path, {headers: {"Accept": "application/json", ...(options.headers || {})}, ...options});
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return {ok: response.ok, status: response.status, body};
  }

  function detail(result) {
    const d = result.body && result.body.detail;
    if (!d) return `HTTP ${result.status}`;
    return typeof d === "string" ? d : d.map(e => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  }

  // el("td", {class: "text"}, "a", child, ...): an element with attributes and children.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmt(x, digits = 4) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (typeof x !== "number") return String(x);
    if (Number.isInteger(x) && Math.abs(x) >= 1000) return x.toLocaleString("en");
    return Number.isInteger(x) ? String(x) : x.toFixed(digits);
  }
  const pct = (x, digits = 2) => (x === null || x === undefined) ? "–" : `${(100 * x).toFixed(digits)}%`;
  const interval = r => (r && r.rate !== null && r.rate !== undefined) ? `${pct(r.rate)} [${pct(r.low)}, ${pct(r.high)}]` : "–";
  const bytes = n => n === null || n === undefined ? "–" : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;

  function card(label, value, sub = "", cls = "") {
    return el("div", {class: "card"}, el("div", {class: "label"}, label),
      el("div", {class: `value ${cls}`}, value), sub ? el("div", {class: "sub"}, sub) : null);
  }

  // table(["a", "b"], [[1, 2]], rowAttrs): cells may be nodes; the first column and text cells are left-aligned.
  function table(columns, rows, rowAttrs = () => ({})) {
    const head = el("tr", {}, columns.map((c, i) => el("th", {class: i === 0 ? "text" : null}, c)));
    const body = rows.map((r, j) => el("tr", rowAttrs(r, j), r.map((v, i) =>
      el("td", {class: i === 0 || (typeof v === "string" && isNaN(Number(v))) ? "text" : null},
        v instanceof Node ? v : fmt(v)))));
    return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
  }

  function fill(id, ...children) {
    const node = document.getElementById(id);
    node.replaceChildren(...children.flat().filter(c => c !== null && c !== undefined));
    return node;
  }

  const COLOURS = ["#2457c5", "#d1495b", "#2a9d8f", "#e9a23b", "#6d597a", "#457b9d", "#8d99ae"];

  // The x window a chart shows: opts.window when given (e.g. the last hour, the experiment's time),
  // else the data's span; one point alone (or one x) gets opts.pad each side, never years.
  function xWindow(xs, opts) {
    if (opts.window) return opts.window;
    const lo = Math.min(...xs), hi = Math.max(...xs);
    const pad = opts.pad ?? (opts.time === false ? 1 : 60);
    return lo === hi ? [lo - pad, hi + pad] : [lo, hi];
  }

  // A line chart of series [{label, values, dash?, colour?}] over x (epoch seconds unless opts.time
  // is false). What a reader sees is recorded on the chart's node (data-title, data-labels,
  // data-x-min/-max, data-y-min/-max, data-last: each series' last value), for tests and screenshots.
  function chart(id, title, xs, series, opts = {}) {
    const node = document.getElementById(id) || id;
    node.replaceChildren();
    for (const key of Object.keys(node.dataset)) delete node.dataset[key];
    node.dataset.title = title;
    if (!xs.length) {
      node.append(el("div", {class: "empty"}, `${title}: no data yet`));
      return null;
    }
    const [xMin, xMax] = xWindow(xs, opts);
    const spec = {
      title, width: opts.width || 440, height: opts.height || 220,
      scales: {
        x: {time: opts.time !== false, auto: false, range: () => [xMin, xMax]},
        y: opts.yRange ? {auto: false, range: () => opts.yRange} : {},
      },
      axes: [{label: opts.xLabel || null}, {label: opts.yLabel || null, size: 60}],
      legend: {live: false},  // labels only: a value column that reads "–" until hovered says nothing
      series: [{label: opts.xLabel || "time"}, ...series.map((s, i) => ({
        label: s.label, stroke: s.colour || COLOURS[i % COLOURS.length], width: s.dash ? 1 : 2,
        dash: s.dash ? [4, 4] : undefined, points: {show: xs.length < 30},
        fill: s.fill, value: (u, v) => fmt(v),
      }))],
      hooks: {draw: [u => {
        node.dataset.xMin = u.scales.x.min; node.dataset.xMax = u.scales.x.max;
        node.dataset.yMin = u.scales.y.min; node.dataset.yMax = u.scales.y.max;
      }]},
    };
    const data = series.map(s => s.values.map(v => v === undefined ? null : v));
    node.dataset.labels = JSON.stringify(series.map(s => s.label));
    node.dataset.last = JSON.stringify(data.map(values => [...values].reverse().find(v => v !== null) ?? null));
    return new uPlot(spec, [xs, ...data], node);
  }

  const TOKEN_KEY = "recdistill-admin-token";
  const admin = {
    enabled: document.body.dataset.admin === "on",
    token: () => sessionStorage.getItem(TOKEN_KEY) || "",
    setToken: t => sessionStorage.setItem(TOKEN_KEY, t),
    send: (path, body = null, method = "POST") => api(path, {method, body: body === null ? undefined : JSON.stringify(body),
      headers: {"Authorization": `Bearer ${admin.token()}`, ...(body === null ? {} : {"Content-Type": "application/json"})}}),
  };

  // Run a page's async load, reporting failures in the header instead of the console.
  async function run(load) {
    say("loading…");
    try {
      await load();
      say(`updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      say(`error: ${e.message}`, true);
    }
  }

  // A <select> of bucket widths that starts at the page URL's ?bucket= when it offers that value.
  function bucketSelect(id) {
    const select = document.getElementById(id);
    const wanted = new URLSearchParams(location.search).get("bucket");
    if (wanted && [...select.options].some(o => o.value === wanted)) select.value = wanted;
    return select;
  }

  return {bucketSelect, api, detail, el, fmt, pct, interval, bytes, card, table, fill, chart, admin, run, say};
})();
