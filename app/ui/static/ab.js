// A/B: per arm users, impressions, CTR and conversion with intervals over time, the verdict in
// words, the minimum detectable effect and the sample-ratio check.
"use strict";
(() => {
  const {bucketSelect, api, detail, el, fill, card, table, fmt, pct, interval, chart, run} = UI;

  async function experiments() {
    const select = document.getElementById("experiment");
    // Named experiments, where this service has them (asked of its own schema: no 404 to log).
    const schema = await api("/openapi.json");
    const has = schema.ok && schema.body.paths && schema.body.paths["/v1/experiments"];
    const listed = has ? await api("/v1/experiments") : {ok: false};
    const names = listed.ok ? (listed.body.experiments || []).map(e => typeof e === "string" ? e : e.name) : [];
    const fallback = document.body.dataset.experiment;
    select.replaceChildren(...(names.length ? names : [fallback]).map(n => el("option", {value: n}, n)));
    if (listed.ok && listed.body.running) select.value = listed.body.running;
    select.disabled = names.length < 2;
    return names.length > 0;
  }

  let named = false;

  async function load() {
    const bucket = document.getElementById("bucket").value;
    const name = document.getElementById("experiment").value;
    const q = named ? `experiment=${encodeURIComponent(name)}&` : "";
    const [report, series] = await Promise.all([api(`/v1/ab/report?${q}`), api(`/v1/ab/timeseries?${q}bucket_seconds=${bucket}`)]);
    if (!report.ok) throw new Error(detail(report));
    const r = report.body;
    const v = r.verdict;
    fill("verdict", v ? [el("strong", {class: v.verdict === "better" ? "good" : v.verdict === "worse" ? "bad" : "warn"},
      `Verdict on ${v.metric}: ${v.verdict}. `), v.summary,
      el("div", {class: "note"}, `MDE now: ${v.mde === null ? "–" : pct(v.mde, 3)} absolute (${v.mde_relative === null ? "–" : pct(v.mde_relative, 1)} relative) at α = ${v.alpha}, power ${v.power}`,
        v.more_users_needed ? ` · more users needed per arm for a ${pct(v.target_relative_effect, 0)} lift: ${Object.entries(v.more_users_needed).map(([a, n]) => `${a} ${fmt(n)}`).join(", ")}` : "")]
      : el("span", {class: "note"}, "No verdict: the experiment has no two arms (RECDISTILL_EXPERIMENT_TEACHER_SHARE is 0)."));
    const srm = r.srm;
    fill("srm", card("SRM", srm.mismatch ? "mismatch" : "ok", srm.warning || (srm.p_value === null ? "too few users" : `χ² p = ${fmt(srm.p_value, 3)}`), srm.mismatch ? "bad" : "good"),
      ...Object.entries(srm.observed).map(([arm, n]) => card(`${arm} users`, fmt(n), `expected ${fmt(srm.expected[arm], 1)}`)),
      r.pair ? card("Pair", r.pair.name || `${r.pair.control.arm} vs ${r.pair.treatment.arm}`) : null,
      r.coverage === undefined || r.coverage === null ? null : typeof r.coverage === "number" ? card("Coverage", pct(r.coverage))
        : card("Coverage", pct(r.coverage.coverage), `${fmt(r.coverage.in_experiment)} of ${fmt(r.coverage.served)} answers in the split`));
    const arms = Object.entries(r.arms);
    fill("arms-table", table(["arm", "share", "users", "requests", "impressions", "clicks", "purchases", "CTR [95%]", "conversion [95%]", "CTR per user [95%]"],
      arms.map(([arm, c]) => {
        const u = ((r.per_user[arm] || {}).metrics || {}).ctr;
        return [arm, c.share, c.users, c.requests, c.impressions, c.clicks, c.purchases, interval(c.ctr), interval(c.conversion), interval(u)];
      })));
    const buckets = series.ok ? series.body.buckets : [];
    const names = series.ok ? series.body.arms : [];
    const xs = buckets.map(b => b.start);
    const lines = (metric) => names.flatMap(arm => [
      {label: `${arm}`, values: buckets.map(b => b.arms[arm].cumulative[metric].rate)},
      {label: `${arm} low`, values: buckets.map(b => b.arms[arm].cumulative[metric].low), dash: true},
      {label: `${arm} high`, values: buckets.map(b => b.arms[arm].cumulative[metric].high), dash: true},
    ]);
    const colours = ["#2457c5", "#d1495b", "#2a9d8f", "#e9a23b"];
    const paint = s => s.map((x, i) => ({...x, colour: colours[Math.floor(i / 3) % colours.length]}));
    chart("chart-ctr", "CTR (cumulative)", xs, paint(lines("ctr")));
    chart("chart-conversion", "Conversion (cumulative)", xs, paint(lines("conversion")));
    chart("chart-users", "Users per bucket", xs, names.map(arm =>
      ({label: `${arm} users`, values: buckets.map(b => b.arms[arm].users)})));
  }

  bucketSelect("bucket").addEventListener("change", () => run(load));
  document.getElementById("experiment").addEventListener("change", () => run(load));
  run(async () => { named = await experiments(); await load(); });
})();
