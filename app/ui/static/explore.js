// Explore: one user (or a typed history) -> the history with catalogue fields, the student's and
// the teacher's lists side by side with rank changes, and the agreement of that one answer
// (POST /v1/compare, filters as in the API).
"use strict";
(() => {
  const {api, detail, el, fill, card, table, fmt, run} = UI;
  const $ = id => document.getElementById(id);
  const list = text => text.split(/[\s,]+/).map(s => s.trim()).filter(Boolean);
  const MIN_SHARED_FOR_TAU = 5;

  function request() {
    const body = {k: Number($("k").value) || 10, exclude_seen: $("exclude-seen").checked};
    const user = $("user").value.trim(), history = list($("history").value);
    if (user) body.user_id = user;
    if (history.length) body.history = history;
    const filters = {};
    if (list($("categories").value).length) filters.categories = list($("categories").value);
    if (list($("exclude-items").value).length) filters.exclude_items = list($("exclude-items").value);
    if ($("min-price").value !== "") filters.min_price = Number($("min-price").value);
    if ($("max-price").value !== "") filters.max_price = Number($("max-price").value);
    if (Object.keys(filters).length) body.filters = filters;
    return body;
  }

  async function catalogue(ids) {
    if (!ids.length) return {};
    const q = ids.map(i => `ids=${encodeURIComponent(i)}`).join("&");
    const result = await api(`/ui/api/items?${q}`);
    return result.ok ? Object.fromEntries(result.body.items.map(i => [i.item_id, i])) : {};
  }

  function rankCell(rank, other) {
    if (other === undefined) return el("span", {class: "rank-new", title: "not in the other list"}, "new");
    if (other === rank) return el("span", {}, "=");
    const d = other - rank;  // > 0: ranked higher here than in the other list
    return el("span", {class: d > 0 ? "rank-up" : "rank-down"}, `${d > 0 ? "▲" : "▼"}${Math.abs(d)}`);
  }

  // The version's extra catalogue columns (e.g. title), beyond category and price.
  const STANDARD = new Set(["item_id", "known", "available", "category", "price", "popularity_rank"]);
  const extraKeys = info => [...new Set(Object.values(info).flatMap(c => Object.keys(c).filter(k => !STANDARD.has(k))))];

  function answer(id, items, otherRanks, info) {
    const extra = extraKeys(info);
    fill(id, table(["#", "item", "score", "vs other", "category", "price", ...extra], items.map((item, i) => {
      const c = info[item.item_id] || {};
      return [i + 1, item.item_id, item.score, rankCell(i + 1, otherRanks[item.item_id]), c.category ?? "–", c.price ?? null,
        ...extra.map(k => c[k] ?? "–")];
    }), (row) => ({class: otherRanks[row[1]] === row[0] ? null : "changed", "data-item": row[1]})));
  }

  async function load() {
    const body = request();
    if (!body.user_id && !body.history) { fill("agreement", card("Compare", "enter a user id or a history")); return; }
    let history = body.history || [];
    if (!body.history && body.user_id) {
      const h = await api(`/v1/users/${encodeURIComponent(body.user_id)}/history`);
      history = h.ok ? h.body.items.map(i => i.item_id) : [];
    }
    const result = await api("/v1/compare", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    if (!result.ok) throw new Error(detail(result));
    const r = result.body;
    const s = r.student.items, t = r.teacher.available === false ? [] : r.teacher.items;
    const info = await catalogue([...new Set([...history, ...s.map(i => i.item_id), ...t.map(i => i.item_id)])]);
    const ranks = items => Object.fromEntries(items.map((i, n) => [i.item_id, n + 1]));
    const a = r.agreement || {};
    const shared = s.filter(i => t.some(j => j.item_id === i.item_id)).length;
    // A user the service knows nothing about gets the popular list from both sides: their agreement
    // (every metric 1) compares a list with itself and says nothing about the models.
    const unknown = body.user_id && !body.history && !history.length && r.student.fallback === "popular";
    const headline = unknown ? [card("Unknown user", body.user_id, "no stored history: both answers are the popular fallback, so the agreement is not a comparison", "warn")]
      : [
        ...["overlap@k", "rbo", "ndcg_vs_teacher"].filter(k => k in a).map(k => card(k, fmt(a[k], 3))),
        // Kendall τ is computed over the items both lists share: with a handful it is noise, not a headline.
        shared >= MIN_SHARED_FOR_TAU ? card("kendall_tau", fmt(a.kendall_tau, 3), `over ${shared} shared items`) : null,
      ];
    fill("agreement", headline,
      r.teacher.available === false ? card("teacher", "not available", r.teacher.reason, "warn") : null,
      card("latency", `${fmt(r.student.latency_ms, 2)} / ${r.teacher.latency_ms === undefined ? "–" : fmt(r.teacher.latency_ms, 2)} ms`, "student / teacher"),
      card("rank changes", fmt(r.rank_changes.length)),
      r.student.fallback && !unknown ? card("fallback", r.student.fallback, "", "warn") : null);
    fill("agreement-note", unknown || shared >= MIN_SHARED_FOR_TAU || !("kendall_tau" in a) ? "" :
      `Kendall τ = ${fmt(a.kendall_tau, 3)} is computed over the ${shared} item${shared === 1 ? "" : "s"} both lists share: too few to read (needs ${MIN_SHARED_FOR_TAU}).`);
    const teacherName = r.candidate ? "Candidate" : "Teacher";
    $("student-title").textContent = `Student · ${r.student.model_version}`;
    $("teacher-title").textContent = `${teacherName} · ${r.teacher.model_version}`;
    const extra = extraKeys(info);
    fill("history-list", history.length ? table(["#", "item", "category", "price", "popularity rank", ...extra],
      history.map((id, i) => { const c = info[id] || {}; return [i + 1, c.available === false ? `${id} (unavailable now)` : id, c.known === false ? "unknown" : (c.category ?? "–"), c.price ?? null, c.popularity_rank ?? null, ...extra.map(k => c[k] ?? "–")]; }))
      : el("p", {class: "note"}, "No history: the answer falls back to the popular items."));
    answer("student-list", s, ranks(t), info);
    answer("teacher-list", t, ranks(s), info);
  }

  const params = new URLSearchParams(location.search);
  for (const [param, id] of [["user", "user"], ["history", "history"], ["k", "k"]]) if (params.has(param)) $(id).value = params.get(param);
  $("query").addEventListener("submit", e => { e.preventDefault(); run(load); });
  if (params.has("user") || params.has("history")) run(load);
})();
