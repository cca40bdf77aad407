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
        ready.body && ready.body.detail ? ready.body.detail : "",
        !ready.ok ? "bad" : ready.body && ready.body.status === "degraded" ? "warn" : "good"),
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
    const now = Date.now() / 1000, window = [now - 3600, now];  // the last hour, however few buckets
    chart("chart-rate", "Requests per second", xs, [{label: "req/s", values: buckets.map(b => b.rate)}], {window});
    chart("chart-latency", "Latency (ms)", xs, ["p50", "p95", "p99"].map(q =>
      ({label: `${q} ms`, values: buckets.map(b => b[`${q}_ms`])})), {window, yLabel: "ms"});
    chart("chart-errors", "Errors per bucket", xs, [
      {label: "5xx", values: buckets.map(b => b.errors_5xx), colour: "#b3261e"},
      {label: "4xx", values: buckets.map(b => b.errors_4xx), colour: "#e9a23b"},
    ], {window});

    const s = shadow.ok ? shadow.body : {};
    const a = ab.ok ? ab.body : {};
    // One card per pair the shadow compared, each named: a teacher and an identical candidate are
    // two comparisons, never one averaged number. The pair compared now comes first.
    const now_ = s.pair ? s.pair.name : null;
    const pairs = (s.by_version || []).slice().sort((x, y) => (y.pair.name === now_) - (x.pair.name === now_));
    const v = a.verdict;
    fill("experiment",
      card("Shadow comparisons", fmt(s.count ?? null), `${pct(s.shadow_rate ?? null, 0)} of answers sampled · ${pairs.length} pair${pairs.length === 1 ? "" : "s"}`),
      ...pairs.map(p => card(`Overlap@k · ${p.pair.name}`, fmt(p.metrics["overlap@k"].mean, 3),
        `${fmt(p.count)} compared · ${pct(p.coverage)} of its answers${p.pair.name === now_ ? " · comparing now" : ""}`)),
      card("A/B verdict", v ? v.verdict : a.experiment ? "no two arms" : "no experiment",
        a.experiment ? `${a.experiment.name}${v && v.stopped ? " · stopped" : ""}` : "", v && v.verdict.startsWith("stop") ? "bad" : ""),
      card("SRM", a.srm ? (a.srm.mismatch ? "mismatch" : "ok") : "–",
        a.srm && a.srm.always_valid_p !== null ? `always-valid p = ${fmt(a.srm.always_valid_p, 3)}` : "", a.srm && a.srm.mismatch ? "bad" : "good"),
    );
  }
  const bucket = bucketSelect("bucket");
  bucket.addEventListener("change", () => run(load));
  run(load);
  setInterval(() => run(load), 30000);
})();
