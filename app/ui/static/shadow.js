// Shadow: per pair of versions (the serving student against its teacher, or against a candidate's
// student) the agreement over time beside the same pair's offline agreement, the latency ratio, and
// the share of the pair's answers compared. Every figure names its pair: two pairs are never blended.
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
    const info = pair.pair;
    const name = info.name;
    const online = (report.by_version || []).find(b => b.pair.kind === info.kind &&
      b.student_version === pair.student_version && b.teacher_version === pair.teacher_version) || {};
    // offline agreement is recorded per version, student vs its own teacher: none for a candidate pair
    const offline = info.kind === "teacher_vs_student" ? offlineAgreement(pair.student_version, versions) : {};
    const xs = pair.buckets.map(b => b.start);
    const ids = ["agreement", "ratio", "share"].map(k => `${k}-${info.kind}-${pair.student_version}-${pair.teacher_version}`.replace(/[^A-Za-z0-9_-]/g, "_"));
    const since = online.counted_from ? ` since ${new Date(online.counted_from * 1000).toLocaleString()}` : "";
    const box = el("section", {class: "pair", "data-pair": name},
      el("h2", {}, name, el("small", {}, ` · ${fmt(online.count ?? null)} comparisons` +
        (online.coverage === undefined || online.coverage === null ? "" : ` · ${pct(online.coverage)} of ${fmt(online.served)} answers compared${since}`))),
      el("div", {class: "table-wrap"}, table(["metric", "online mean", "online p10", "online p90", "offline (test users)"], METRICS.map(m => {
        const s = (online.metrics || {})[m] || {};
        return [m, s.mean ?? null, s.p10 ?? null, s.p90 ?? null, offline[m] ?? null];
      }))),
      el("div", {class: "charts"}, ids.map(id => el("div", {class: "chart", id}))));
    document.getElementById("pairs").append(box);
    const window = xs.length ? [Math.min(...xs), Math.max(...xs) + pair.bucket_seconds] : null;
    const opts = {window};
    chart(ids[0], `Agreement per bucket (mean) · ${name}`, xs, METRICS.map(m => ({label: m, values: pair.buckets.map(b => b[m])})),
      {...opts, yRange: [-1, 1]});
    chart(ids[1], `Latency ratio ${pair.latency_ratio} (p50) · ${name}`, xs,
      [{label: pair.latency_ratio, values: pair.buckets.map(b => b.latency_ratio_p50)}], opts);
    chart(ids[2], `Answers compared (%) · ${name}`, xs,
      [{label: `of ${info.control.arm} ${info.control.version}'s`, values: pair.buckets.map(b => b.share_compared === null ? null : 100 * b.share_compared)}],
      {...opts, yLabel: "%", yRange: [0, 100]});
  }

  async function load() {
    const bucket = Number(document.getElementById("bucket").value);
    const [series, report, versions] = await Promise.all([
      api(`/v1/shadow/timeseries?bucket_seconds=${bucket}`), api("/v1/shadow/report"), api("/ui/api/versions"),
    ]);
    if (!series.ok) throw new Error(detail(series));
    const r = report.ok ? report.body : {};
    const pairs = series.body.pairs;
    fill("summary",
      card("Shadow rate", pct(series.body.shadow_rate, 0), "of the serving student's answers sent to the other side"),
      card("Comparisons", fmt(r.count ?? 0), `over ${pairs.length} pair${pairs.length === 1 ? "" : "s"} (each below)`),
      card("Dropped · errors · timeouts", `${fmt(r.dropped ?? 0)} · ${fmt(r.error ?? 0)} · ${fmt(r.timeout ?? 0)}`),
      r.pair ? card("Comparing now", r.pair.name) : null);
    fill("pairs");
    if (!pairs.length) {
      fill("pairs", el("p", {class: "note"}, "No shadow comparisons yet: set RECDISTILL_SHADOW_RATE above 0 and send traffic."));
    }
    const list = versions.ok ? versions.body.versions : [];
    for (const pair of pairs) pairBlock({...pair, bucket_seconds: bucket}, r, list);
  }
  bucketSelect("bucket").addEventListener("change", () => run(load));
  run(load);
})();
