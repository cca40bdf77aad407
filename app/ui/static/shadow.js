// Shadow: agreement of the teacher (or candidate) with the served student over time, per version
// pair, beside the same pair's offline agreement, and the share of the student's answers compared.
"use strict";
(() => {
  const {bucketSelect, api, detail, el, fill, card, table, fmt, pct, chart, run} = UI;
  const METRICS = ["overlap@k", "rbo", "kendall_tau", "ndcg_vs_teacher"];
  // offline (manifest metrics.agreement) key for each online metric; both come from core.agreement
  const OFFLINE = {"overlap@k": ["overlap@10", "overlap@k", "overlap"], "rbo": ["rbo"], "kendall_tau": ["kendall_tau", "tau"],
    "ndcg_vs_teacher": ["ndcg_vs_teacher", "ndcg@10_vs_teacher", "ndcg"]};

  function offlineAgreement(version, versions) {
    const v = versions.find(x => x.version === version);
    const a = v && v.metrics ? v.metrics.agreement : null;
    if (!a) return {};
    const flat = typeof a.student === "object" ? a.student : a;
    const out = {};
    for (const [name, keys] of Object.entries(OFFLINE)) {
      const key = keys.find(k => flat[k] !== undefined);
      out[name] = key === undefined ? null : flat[key];
    }
    return out;
  }

  function pairBlock(pair, report, versions) {
    const kind = pair.pair ? pair.pair.kind : "teacher_vs_student";
    const title = pair.pair ? pair.pair.name : `${pair.student_version} vs ${pair.teacher_version}`;
    const online = (report.by_version || []).find(b => b.student_version === pair.student_version &&
      b.teacher_version === pair.teacher_version && (!b.pair || b.pair.kind === kind)) || {};
    // offline agreement is recorded per version, student vs its own teacher: none for a candidate pair
    const offline = kind === "teacher_vs_student" ? offlineAgreement(pair.student_version, versions) : {};
    const xs = pair.buckets.map(b => b.start);
    const ids = ["agreement", "ratio", "share"].map(k => `${k}-${pair.student_version}-${pair.teacher_version}`.replace(/[^A-Za-z0-9_-]/g, "_"));
    const box = el("section", {class: "pair", "data-pair": title},
      el("h2", {}, title, el("small", {}, ` · ${fmt(online.count ?? null)} comparisons` +
        (online.coverage === undefined ? "" : ` · coverage ${pct(online.coverage)}`))),
      table(["metric", "online mean", "online p10", "online p90", "offline (test users)"], METRICS.map(m => {
        const s = (online.metrics || {})[m] || {};
        return [m, s.mean ?? null, s.p10 ?? null, s.p90 ?? null, offline[m] ?? null];
      })),
      el("div", {class: "charts"}, ids.map(id => el("div", {class: "chart", id}))));
    document.getElementById("pairs").append(box);
    chart(ids[0], "Agreement per bucket (mean)", xs, METRICS.map(m => ({label: m, values: pair.buckets.map(b => b[m])})));
    chart(ids[1], "Latency ratio teacher / student (p50)", xs, [{label: "ratio", values: pair.buckets.map(b => b.latency_ratio_p50)}]);
    chart(ids[2], "Share of the control arm's answers compared", xs, [{label: "share", values: pair.buckets.map(b => b.share_compared)}]);
  }

  async function load() {
    const bucket = document.getElementById("bucket").value;
    const [series, report, versions] = await Promise.all([
      api(`/v1/shadow/timeseries?bucket_seconds=${bucket}`), api("/v1/shadow/report"), api("/ui/api/versions"),
    ]);
    if (!series.ok) throw new Error(detail(series));
    const r = report.ok ? report.body : {};
    const coverage = r.coverage === undefined || r.coverage === null ? null : (typeof r.coverage === "number" ? r.coverage : r.coverage.coverage);
    fill("summary",
      card("Shadow rate", fmt(series.body.shadow_rate, 3), "share of student answers sent to the teacher"),
      card("Comparisons", fmt(r.count ?? 0)),
      card("Dropped · errors · timeouts", `${fmt(r.dropped ?? 0)} · ${fmt(r.error ?? 0)} · ${fmt(r.timeout ?? 0)}`),
      coverage === null ? null : card("Coverage", pct(coverage)),
      r.pair ? card("Comparing now", typeof r.pair === "string" ? r.pair : r.pair.name) : null);
    fill("pairs");
    if (!series.body.pairs.length) {
      fill("pairs", el("p", {class: "note"}, "No shadow comparisons yet: set RECDISTILL_SHADOW_RATE above 0 and send traffic."));
    }
    const list = versions.ok ? versions.body.versions : [];
    for (const pair of series.body.pairs) pairBlock(pair, r, list);
  }
  bucketSelect("bucket").addEventListener("change", () => run(load));
  run(load);
})();
