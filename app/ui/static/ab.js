// A/B: the verdict in words and the always-valid interval it is read from (over time, narrowing),
// the arms' randomised traffic (anonymous traffic apart), the guardrails, CUPED, the users still
// needed and when they can be expected, and the fixed-horizon reading kept apart.
"use strict";
(() => {
  const {bucketSelect, api, detail, el, fill, card, table, fmt, pct, interval, chart, run} = UI;
  const signed = x => (x === null || x === undefined) ? "–" : `${x >= 0 ? "+" : ""}${pct(x)}`;
  const when = ts => new Date(ts * 1000).toLocaleString();
  const percent = v => v === null || v === undefined ? null : 100 * v;

  // The experiment to show: ?experiment= when it names one, else the running one, else the newest.
  async function experiments() {
    const select = document.getElementById("experiment");
    const listed = await api("/v1/experiments");
    const names = listed.ok ? listed.body.experiments.map(e => e.name) : [];
    if (!names.length) names.push(document.body.dataset.experiment);
    select.replaceChildren(...names.map(n => el("option", {value: n}, n)));
    const wanted = new URLSearchParams(location.search).get("experiment");
    const running = listed.ok ? listed.body.running : null;
    select.value = names.includes(wanted) ? wanted : running && names.includes(running) ? running : names[names.length - 1];
    select.disabled = names.length < 2;
    document.getElementById("experiment-missing")?.remove();
    if (wanted && !names.includes(wanted)) {
      select.after(el("span", {class: "bad", id: "experiment-missing"}, ` no experiment named ${wanted}: showing ${select.value}`));
    }
  }

  function verdictBlock(r) {
    const v = r.verdict;
    if (!v) return el("span", {class: "note"}, "No verdict: the experiment has no two arms (its treatment share is 0).");
    const cls = v.verdict === "better" ? "good" : v.verdict === "worse" || v.verdict.startsWith("stop") ? "bad" : "warn";
    return [
      v.stopped ? el("span", {class: "badge", "data-stopped": "true"}, `stopped ${when(v.stopped_at)}`) : null,
      el("strong", {class: cls, id: "verdict-word"}, v.verdict),
      // the summary repeats the word first: said once, in colour
      el("span", {id: "verdict-summary"}, ` — ${v.summary.startsWith(`${v.verdict} — `) ? v.summary.slice(v.verdict.length + 3) : v.summary}`),
      el("div", {class: "note"}, `Read from ${v.metric_definition}. Always-valid 95% interval (α = ${v.alpha}, valid at every look), `,
        v.cuped_applied ? `CUPED on each user's pre-period (variance ${pct(v.variance_reduction)} lower). ` : "no pre-period for CUPED. ",
        `The test is tuned for a ${pct(v.planned_lift, 0)} lift.`),
    ];
  }

  function cards(r) {
    const v = r.verdict || {};
    const needed = v.users_needed ? Object.values(v.users_needed) : null;
    const conclusion = v.expected_conclusion;
    const srm = r.srm;
    return [
      v.relative ? card("CTR per user, relative", signed(v.relative.lift), `interval ${signed(v.relative.low)} to ${signed(v.relative.high)} · p = ${fmt(v.p_value, 3)}`) : null,
      needed ? card(`Users needed for a ${pct(v.target_relative_effect, 0)} lift`, `${fmt(Math.max(...needed))} per arm`,
        `${fmt(Math.max(...Object.values(v.more_users_needed)))} more · detectable now: ${pct(v.mde_relative)}`) : null,
      conclusion ? card("Expected conclusion", conclusion.hours_left <= 0 ? "now" : `${fmt(conclusion.hours_left, 1)} h`,
        `at ${when(conclusion.at)}, at ${fmt(Math.min(...conclusion.users_per_hour), 0)} new users/h per arm`) : null,
      card("SRM", srm.mismatch ? "mismatch" : "ok", srm.warning || (srm.always_valid_p === null ? "too few users" : `always-valid p = ${fmt(srm.always_valid_p, 3)}`), srm.mismatch ? "bad" : "good"),
      r.pair ? card("Pair", r.pair.name) : null,
      card("Coverage", pct(r.coverage.coverage), `${fmt(r.coverage.in_experiment)} of ${fmt(r.coverage.served)} answers in the experiment`),
    ];
  }

  function armsTable(r) {
    return table(["arm", "share", "users", "requests", "impressions", "clicks", "purchases",
      "CTR per user (the verdict's) [95%]", "CTR per impression [95%]", "conversion [95%]"],
    Object.entries(r.arms).map(([arm, c]) => [arm, pct(c.share, 0), c.users, c.requests, c.impressions, c.clicks, c.purchases,
      interval(((r.per_user[arm] || {}).metrics || {}).ctr), interval(c.ctr), interval(c.conversion)]));
  }

  function guardrailsTable(r) {
    const g = r.guardrails;
    if (!g) return el("p", {class: "note"}, "No guardrails: the experiment has no two arms.");
    const [control, treatment] = Object.keys(g.arms);
    const a = g.arms;
    const figure = {
      error_rate: arm => `${pct(a[arm].error_rate)} (${fmt(a[arm].errors)} of ${fmt(a[arm].attempts)})`,
      latency_p99: arm => a[arm].latency_p99_ms === null ? "–" : `${fmt(a[arm].latency_p99_ms, 1)} ms`,
      fallback_share: arm => `${pct(a[arm].fallback_share)} (${fmt(a[arm].fallbacks)})`,
    };
    const rows = Object.entries(g.tests).map(([name, t]) => [t.label, figure[name](control), figure[name](treatment),
      t.low === null ? "–" : `${signed(t.low)} to ${signed(t.high)}`,
      el("span", {class: t.status === "worse" ? "bad" : t.status === "ok" ? "good" : "warn"}, t.status)]);
    rows.push(["sample ratio", "", "", `always-valid p = ${fmt(r.srm.always_valid_p, 3)}`,
      el("span", {class: r.srm.mismatch ? "bad" : "good"}, r.srm.mismatch ? "worse" : "ok")]);
    return table(["guardrail", control, treatment, "treatment - control, share of bad answers [always-valid]", "status"], rows);
  }

  function fixedHorizon(r) {
    const f = r.fixed_horizon;
    if (!f) return el("p", {class: "note"}, "No fixed-horizon reading: the experiment has no two arms.");
    const needed = f.users_needed ? Math.max(...Object.values(f.users_needed)) : null;
    return el("p", {}, `${f.note}. Relative lift ${signed(f.relative.lift)}, 95% interval ${signed(f.relative.low)} to ${signed(f.relative.high)}, `,
      `p = ${fmt(f.p_value, 3)} (${f.verdict}); a sample size fixed in advance for the planned lift would be ${needed === null ? "–" : fmt(needed)} users per arm.`);
  }

  function charts(series, r) {
    const buckets = series.buckets, [control, treatment] = series.arms;
    const xs = buckets.map(b => b.start);
    const info = r.experiment;
    const end = info.stopped_at ? Date.parse(info.stopped_at) / 1000 : Date.now() / 1000;
    const window = [Math.min(Date.parse(info.started_at) / 1000, ...xs), Math.max(end, ...xs.map(x => x + series.bucket_seconds))];
    const diff = key => buckets.map(b => percent(b.difference ? b.difference[key] : null));
    // Scaled to the latest interval and every estimate: the first looks' intervals are far wider
    // (few users) and come in from beyond the edges, so the narrowing stays readable.
    const last = buckets.length ? buckets[buckets.length - 1].difference || {} : {};
    const reach = Math.max(1, ...[last.lift_low, last.lift_high].map(v => Math.abs(percent(v) ?? 0)),
      ...diff("lift").filter(v => v !== null).map(Math.abs));
    chart("chart-interval", `CTR per user, ${treatment} vs ${control}: relative difference (%)`, xs, [
      {label: "difference", values: diff("lift"), colour: "#1d2330"},
      {label: "always-valid 95% low", values: diff("lift_low"), dash: true, colour: "#2457c5"},
      {label: "always-valid 95% high", values: diff("lift_high"), dash: true, colour: "#2457c5"},
      {label: "no difference", values: xs.map(() => 0), colour: "#8d99ae"},
    ], {window, yLabel: "%", yRange: [-1.5 * reach, 1.5 * reach], width: 900, height: 260});
    const colours = {[control]: "#2457c5", [treatment]: "#d1495b"};
    chart("chart-ctr", "CTR per impression, cumulative (%), Wilson 95% dashed", xs, series.arms.flatMap(arm => [
      {label: `${arm}`, values: buckets.map(b => percent(b.arms[arm].cumulative.ctr.rate)), colour: colours[arm]},
      {label: `${arm} low`, values: buckets.map(b => percent(b.arms[arm].cumulative.ctr.low)), dash: true, colour: colours[arm]},
      {label: `${arm} high`, values: buckets.map(b => percent(b.arms[arm].cumulative.ctr.high)), dash: true, colour: colours[arm]},
    ]), {window, yLabel: "%"});
    chart("chart-users", "Users per bucket (randomised), anonymous answers apart", xs, [
      ...series.arms.map(arm => ({label: `${arm} users`, values: buckets.map(b => b.arms[arm].users), colour: colours[arm]})),
      {label: "anonymous answers", values: buckets.map(b => b.anonymous_requests), dash: true, colour: "#8d99ae"},
    ], {window});
  }

  async function load() {
    const bucket = document.getElementById("bucket").value;
    const name = encodeURIComponent(document.getElementById("experiment").value);
    const [report, series] = await Promise.all([api(`/v1/ab/report?experiment=${name}`), api(`/v1/ab/timeseries?experiment=${name}&bucket_seconds=${bucket}`)]);
    if (!report.ok) throw new Error(detail(report));
    const r = report.body;
    fill("verdict", verdictBlock(r));
    fill("cards", cards(r));
    fill("arms-table", armsTable(r));
    const anon = r.anonymous;
    fill("anonymous", anon.requests ? `${fmt(anon.requests)} anonymous answers (no user or session id: served by ${anon.served_by}, never randomised) are outside the comparison; their CTR per impression: ${interval(anon.ctr)}.` : "No anonymous answers.");
    fill("guardrails-table", guardrailsTable(r));
    fill("fixed-horizon-body", fixedHorizon(r));
    if (series.ok) charts(series.body, r);
  }

  bucketSelect("bucket").addEventListener("change", () => run(load));
  document.getElementById("experiment").addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.set("experiment", document.getElementById("experiment").value);
    history.replaceState(null, "", url);
    run(load);
  });
  run(async () => { await experiments(); await load(); });
})();
