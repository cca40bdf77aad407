// Overview: what is served and why, readiness, the last hour of traffic, and the experiment at a glance.
"use strict";
(() => {
  const {bucketSelect, api, card, fill, fmt, pct, chart, run} = UI;

  function candidateText(models) {
    const c = models.candidate;  // present once candidate versions exist; a name or an object
    if (c === undefined || c === null) return "none";
    return typeof c === "string" ? c : (c.version || JSON.stringify(c));
  }

  async function load() {
    const [models, ready, traffic, shadow, ab] = await Promise.all([
      api("/v1/models"), api("/health/ready"), api(`/ui/api/traffic?bucket_seconds=${bucket.value}`),
      api("/v1/shadow/report"), api("/v1/ab/report"),
    ]);
    const m = models.ok ? models.body : {};
    const because = m.served_because || "–";
    fill("cards",
      card("Served version", m.version || "none", m.created_at ? `published ${m.created_at.slice(0, 19)}` : ""),
      card("Why", because, m.pinned ? `pinned ${m.pinned.version} (${m.pinned.source})` : `LATEST = ${m.latest || "–"}`),
      card("Candidate", candidateText(m), m.candidate_error || "", m.candidate_error ? "bad" : ""),
      card("Readiness", ready.body ? ready.body.status : `HTTP ${ready.status}`,
        ready.body && ready.body.detail ? ready.body.detail : "", ready.ok ? "good" : "bad"),
      card("Retrieval", m.retrieval_served || "–", m.n_items ? `${fmt(m.n_items)} items` : ""),
    );

    const buckets = traffic.ok ? traffic.body.buckets : [];
    const total = buckets.reduce((a, b) => a + b.requests, 0);
    const seconds = buckets.reduce((a, b) => a + b.seconds, 0);
    const e4 = buckets.reduce((a, b) => a + b.errors_4xx, 0);
    const e5 = buckets.reduce((a, b) => a + b.errors_5xx, 0);
    const last = buckets.length ? buckets[buckets.length - 1] : {};
    fill("totals",
      card("Requests", fmt(total), seconds ? `${fmt(total / seconds, 2)} req/s on average` : ""),
      card("5xx", fmt(e5), total ? pct(e5 / total) : "", e5 ? "bad" : "good"),
      card("4xx", fmt(e4), total ? pct(e4 / total) : ""),
      card("Latency, last bucket", last.p50_ms === undefined ? "–" : `p50 ${fmt(last.p50_ms, 2)} ms`,
        last.p99_ms === undefined ? "" : `p95 ${fmt(last.p95_ms, 2)} · p99 ${fmt(last.p99_ms, 2)} ms`),
    );
    const xs = buckets.map(b => b.start);
    chart("chart-rate", "Requests per second", xs, [{label: "req/s", values: buckets.map(b => b.rate)}]);
    chart("chart-latency", "Latency (ms)", xs, ["p50", "p95", "p99"].map(q =>
      ({label: q, values: buckets.map(b => b[`${q}_ms`])})));
    chart("chart-errors", "Errors per bucket", xs, [
      {label: "5xx", values: buckets.map(b => b.errors_5xx), colour: "#b3261e"},
      {label: "4xx", values: buckets.map(b => b.errors_4xx), colour: "#e9a23b"},
    ]);

    const s = shadow.ok ? shadow.body : {};
    const a = ab.ok ? ab.body : {};
    const overlap = s.metrics ? s.metrics["overlap@k"].mean : null;
    fill("experiment",
      card("Shadow comparisons", fmt(s.count ?? null), `rate ${fmt(s.shadow_rate ?? null, 2)}${s.coverage !== undefined ? ` · coverage ${pct(typeof s.coverage === "number" ? s.coverage : (s.coverage || {}).coverage)}` : ""}`),
      card("Overlap@k (shadow)", fmt(overlap), s.errors ? `${s.errors} errors` : ""),
      card("A/B verdict", a.verdict ? a.verdict.verdict : "no two arms", a.experiment ? a.experiment.name : ""),
      card("SRM", a.srm ? (a.srm.mismatch ? "mismatch" : "ok") : "–", a.srm && a.srm.p_value !== null ? `p = ${fmt(a.srm.p_value, 3)}` : "",
        a.srm && a.srm.mismatch ? "bad" : "good"),
    );
  }
  const bucket = bucketSelect("bucket");
  bucket.addEventListener("change", () => run(load));
  run(load);
  setInterval(() => run(load), 30000);
})();
