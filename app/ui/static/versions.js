// Versions: every published version's offline metrics side by side, sizes, parity, gates, the
// report's plots and training curves; with the admin token, promote / pin / rollback / unpin.
"use strict";
(() => {
  const {api, detail, el, fill, card, table, fmt, bytes, chart, admin, run, say} = UI;

  const sci = x => typeof x === "number" ? x.toExponential(1) : "–";  // parity diffs are ~1e-7
  const NOT_METRICS = new Set(["epoch", "seconds", "loss", "users"]);

  // Union of keys, in first-seen order.
  const union = lists => [...new Set(lists.flat())];

  function metricsTable(rows) {
    // rows of versions -> one row per (version, model), columns = the union of metrics.
    const lines = [];
    for (const v of rows) {
      const test = (v.metrics || {}).test || {};
      for (const [model, values] of Object.entries(test)) lines.push([v.version, model, values]);
    }
    const columns = union(lines.map(([, , values]) => Object.keys(values).filter(k => k !== "users")));
    return lines.length ? table(["version", "model", ...columns], lines.map(([v, m, values]) =>
      [v, m, ...columns.map(c => values[c] ?? null)])) : el("p", {class: "note"}, "No offline test metrics recorded.");
  }

  function agreementTable(rows) {
    const lines = rows.filter(v => (v.metrics || {}).agreement).flatMap(v =>
      Object.entries(v.metrics.agreement).map(([side, values]) =>
        typeof values === "object" ? [v.version, side, values] : [v.version, "student", {[side]: values}]));
    const columns = union(lines.map(([, , values]) => Object.keys(values)));
    return lines.length ? table(["version", "vs teacher", ...columns], lines.map(([v, s, values]) =>
      [v, s, ...columns.map(c => values[c] ?? null)])) : el("p", {class: "note"}, "No offline agreement recorded.");
  }

  function gatesTable(rows) {
    return table(["version", "gates", "gate lines", "parity (max |Δscore|)", "warnings"], rows.map(v => {
      const gates = (v.metrics || {}).gates || {};
      const parity = Object.entries(v.parity || {}).map(([side, p]) =>
        `${side}: ${sci(typeof p === "object" ? (p.max_abs_score_diff ?? p.max_abs_diff) : p)}`).join(" · ");
      const lines = (gates.gates || []).map(g => g.line).join(" | ");
      const cls = gates.status === "passed" ? "good" : gates.status ? "bad" : "";
      return [v.version, el("span", {class: cls}, gates.status || "–"), lines || "–", parity || "–",
        ((v.metrics || {}).warnings || []).join(" | ") || "–"];
    }));
  }

  // What each action does, asked before it is done: they change what every replica serves.
  const CONFIRM = {
    promote: v => `Promote ${v}? It becomes LATEST and every replica serves it (unless a pin holds another).`,
    pin: v => `Pin ${v}? Every replica serves it until unpinned, whatever LATEST is.`,
    candidate: v => `Make ${v} the candidate? It is loaded beside the served version for shadow and A/B.`,
    rollback: () => "Roll back? LATEST goes back to the version before it, on every replica.",
    unpin: () => "Unpin? Every replica goes back to serving LATEST.",
    "clear-candidate": () => "Clear the candidate? Its shadow comparisons stop.",
  };

  function actions(v, state) {
    if (!admin.enabled) return "–";
    const disabled = !admin.token();
    const act = (label, path, body = null) => el("button", {type: "button", disabled, "data-action": label, "data-version": v.version,
      onclick: () => adminAction(path, body, "POST", CONFIRM[label](v.version))}, label);
    return el("span", {class: "actions"}, act("promote", `/admin/models/${encodeURIComponent(v.version)}/promote`), " ",
      act("pin", `/admin/models/${encodeURIComponent(v.version)}/pin`),
      state.candidate_api ? [" ", act("candidate", "/admin/candidate", {version: v.version})] : null);
  }

  async function adminAction(path, body = null, method = "POST", question = null) {
    if (question !== null && !window.confirm(question)) {
      document.getElementById("admin-result").textContent = `${path}: cancelled`;
      return;
    }
    const result = await admin.send(path, body, method);
    const b = result.body || {};
    const message = !result.ok ? `${path}: ${detail(result)}` : b.served_version !== undefined
      ? `${path}: serving ${b.served_version} (${b.served_because})` : `${path}: candidate ${b.candidate ?? "none"}, serving ${b.serving}`;
    document.getElementById("admin-result").textContent = message;
    say(message, !result.ok);
    await run(load);
  }

  function details(v) {
    const curves = v.curves || {};
    const box = el("details", {open: true}, el("summary", {}, `${v.version}: training curves and plots`));
    const charts = el("div", {class: "charts"});
    box.append(charts);
    for (const [model, curve] of Object.entries(curves)) {
      if (!curve.length) continue;
      const epochs = curve.map(r => r.epoch);
      // Quality metrics only (in [0, 1]): counts such as the validation users on the same axis
      // would flatten NDCG onto 0.
      const metrics = Object.keys(curve[0]).filter(k => !NOT_METRICS.has(k) &&
        curve.every(r => typeof r[k] === "number" && r[k] >= 0 && r[k] <= 1));
      const users = curve[curve.length - 1].users;
      const lossBox = el("div", {class: "chart"}), metricBox = el("div", {class: "chart"});
      charts.append(lossBox, metricBox);
      chart(lossBox, `${model}: training loss`, epochs, [{label: "loss", values: curve.map(r => r.loss)}],
        {time: false, xLabel: "epoch", width: 360, height: 200});
      chart(metricBox, `${model}: validation${users ? ` (${fmt(users)} users)` : ""}`, epochs,
        metrics.map(k => ({label: k, values: curve.map(r => r[k])})), {time: false, xLabel: "epoch", width: 360, height: 200});
    }
    if (!charts.children.length) charts.append(el("p", {class: "note"}, "No training curves in this version's report."));
    for (const plot of v.plots || []) {
      box.append(el("img", {class: "plot", alt: `${v.version} ${plot}`,
        src: `/ui/api/versions/${encodeURIComponent(v.version)}/files/${encodeURIComponent(plot)}`}));
    }
    return box;
  }

  async function load() {
    const result = await api("/ui/api/versions");
    if (!result.ok) throw new Error(detail(result));
    const state = result.body, rows = state.versions.filter(v => !v.error);
    fill("served", card("Served", state.served_version || "none", state.served_because),
      card("Candidate", state.candidate || "none"),
      card("LATEST", state.latest || "–"), card("Pinned", state.pinned ? state.pinned.version : "no",
        state.pinned ? state.pinned.source : ""),
      state.pin_error ? card("Pin error", state.pin_error, "", "bad") : null);
    fill("versions-table", table(
      ["version", "state", "actions", "published", "dataset", "ndcg@10 teacher", "ndcg@10 student", "params teacher",
        "params student", "bytes teacher", "bytes student", "bytes total", "retrieval"],
      state.versions.map(v => v.error ? [v.version, el("span", {class: "bad"}, v.error), "", "", "", "", "", "", "", "", "", "", ""] : [
        v.version,
        [v.version === state.served_version ? "served" : null, v.latest ? "LATEST" : null, v.pinned ? "pinned" : null,
          v.version === state.candidate ? "candidate" : null].filter(Boolean).join(", ") || "–",
        actions(v, state), v.created_at.slice(0, 19), v.dataset.name || v.dataset, v["ndcg@10"].teacher, v["ndcg@10"].student,
        v.parameters.teacher, v.parameters.student, bytes(v.bytes.teacher), bytes(v.bytes.student), bytes(v.bytes.total),
        (v.retrieval || {}).kind || "exact"]),
      v => ({"data-version": v[0]})));
    fill("metrics-table", metricsTable(rows));
    fill("agreement-table", agreementTable(rows));
    fill("gates-table", gatesTable(rows));
    fill("details", rows.slice().reverse().map(details));
    const clear = document.getElementById("clear-candidate");
    if (clear) clear.hidden = !state.candidate_api;
    for (const id of ["rollback", "unpin", "clear-candidate"]) {
      const button = document.getElementById(id);
      if (button) button.disabled = !admin.token();
    }
  }

  const form = document.getElementById("admin");
  if (form) {
    document.getElementById("token").value = admin.token();
    form.addEventListener("submit", e => { e.preventDefault(); admin.setToken(document.getElementById("token").value); run(load); });
    document.getElementById("rollback").addEventListener("click", () => adminAction("/admin/rollback", null, "POST", CONFIRM.rollback()));
    document.getElementById("unpin").addEventListener("click", () => adminAction("/admin/unpin", null, "POST", CONFIRM.unpin()));
    document.getElementById("clear-candidate").addEventListener("click",
      () => adminAction("/admin/candidate", null, "DELETE", CONFIRM["clear-candidate"]()));
  }
  run(load);
})();
