"""What `recdistill models list | show | diff` print for a person: short, aligned, one screen.

Pure functions from the dicts `app.engine.versions` returns (the same dicts `--json` prints and the
admin API serves) to lines of text, so what a person reads and what a script reads never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recdistill.text import MISSING, count, mib, score, signed_mib, table, when

INDENT = " " * 11  # under the values of show's labelled lines ("version    ...")


def state(latest: bool, pinned: bool) -> str:
    return ", ".join(word for word, on in (("LATEST", latest), ("PINNED", pinned)) if on)


def list_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One aligned line per version, oldest first; an unreadable one says why under its name."""
    good = [r for r in rows if not r["error"]]
    header = ["version", "created (UTC)", "dataset", *["teacher", "student"] * 2, "size", "state"]
    cells = [
        [
            r["version"],
            when(r["created_at"]),
            r["dataset"],
            score(r["ndcg@10"]["teacher"]),
            score(r["ndcg@10"]["student"]),
            count(r["parameters"]["teacher"]),
            count(r["parameters"]["student"]),
            mib(r["bytes"]["total"]),
            state(r["latest"], r["pinned"]),
        ]
        for r in good
    ]
    lines = (
        table([header, *cells], "lllrrrrrl", groups=[("ndcg@10", 3, 4), ("parameters", 5, 6)]) if good else []
    )
    width = max(len(r["version"]) for r in rows)
    for r in rows:
        if r["error"]:
            lines.append(
                f"{r['version']:<{width}}  unreadable: {r['error']}  {state(r['latest'], r['pinned'])}".rstrip()
            )
    return lines


def _teacher_source(source: dict[str, Any] | None) -> str:
    if source is None:
        return "not recorded (published before teacher sources were)"
    what = "trained by the pipeline" if source["kind"] == "train" else f"imported: {source['source']}"
    return f"{what} (sha256 {source['sha256'][:12]})"


def _models_table(summary: dict[str, Any]) -> list[str]:
    """Each model's size and test metrics, then its agreement with the teacher's top-k."""
    metrics = summary["metrics"]
    # A version without test metrics still lists its two models' sizes.
    test: dict[str, dict[str, float]] = metrics.get("test") or {"teacher": {}, "student": {}}
    columns = list(dict.fromkeys(k for row in test.values() for k in row if k != "users"))
    parameters = {**metrics.get("parameters", {}), **summary["parameters"]}
    for name, peer in metrics.get("peers", {}).items():
        parameters.setdefault(name, peer.get("parameters"))
    rows = [["model", "parameters", "size", *columns]]
    for name, row in test.items():
        size = mib(summary["bytes"][name]) if name in ("teacher", "student") else MISSING
        rows.append([name, count(parameters.get(name)), size, *(score(row.get(c)) for c in columns)])
    users = {row.get("users") for row in test.values()}
    title = f"test ({count(users.pop())} users)" if len(users) == 1 and None not in users else "test"
    title = title if metrics.get("test") else "models (no test metrics recorded)"
    lines = [title, *table(rows, "lrr" + "r" * len(columns))]
    agreement: dict[str, dict[str, float]] = metrics.get("agreement", {})
    if agreement:
        columns = list(dict.fromkeys(k for row in agreement.values() for k in row if k != "users"))
        rows = [
            ["model", *columns],
            *([n, *(score(r.get(c)) for c in columns)] for n, r in agreement.items()),
        ]
        lines += ["", "agreement with the teacher", *table(rows, "l" + "r" * len(columns))]
    return lines


def _peer_lines(metrics: dict[str, Any]) -> list[str]:
    """How each tuned peer was chosen, in one line (its trials stay in --json)."""
    lines = []
    for name, peer in metrics.get("peers", {}).items():
        if chosen := peer.get("chosen"):
            params = ", ".join(
                f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in chosen.items()
            )
            trials = len(peer.get("trials", []))
            lines.append(f"{name} tuned on {peer.get('metric', 'validation')} over {trials} trials: {params}")
    lines += [f"{name} skipped: {why}" for name, why in metrics.get("peers_skipped", {}).items()]
    return [("peers      " if i == 0 else INDENT) + line for i, line in enumerate(lines)]


def _gate_lines(gates: dict[str, Any] | None) -> list[str]:
    if not gates:
        return []
    advisory = "" if gates.get("required", True) else " (publish.require_gates = false)"
    lines = [f"gates      {gates['status']}{advisory}"]
    return lines + [INDENT + g["line"].removeprefix("gate ") for g in gates.get("gates", [])]


def _parity(parity: dict[str, Any]) -> str:
    return ", ".join(
        f"{side} {'ok' if p.get('passed') else 'FAILED'} ({count(p.get('rows'))} rows, max |score diff| "
        f"{p.get('max_abs_score_diff', float('nan')):.1e})"
        for side, p in parity.items()
    )


def _retrieval(retrieval: dict[str, Any]) -> str:
    if retrieval["kind"] == "exact":
        return "exact top-k (the ONNX graph)"
    params = ", ".join(f"{k} {v}" for k, v in retrieval.get("params", {}).items())
    measured = ", ".join(f"{k} {v:.4f}" for k, v in retrieval.get("metrics", {}).items())
    return f"{retrieval['kind']} index {retrieval.get('index_file')}" + "".join(
        f"; {part}" for part in (params, measured) if part
    )


def show_lines(summary: dict[str, Any], folder: Path, flags: str) -> list[str]:
    """One version on one screen: what, when, on what data, how good and how big, checked how."""
    d, metrics = summary["dataset"], summary["metrics"]
    towers = "; ".join(f"{side} dim {summary[side]['dim']}, history {summary[side]['history_len']}"
                       for side in ("teacher", "student"))  # fmt: skip
    lines = [
        f"version    {summary['version']}" + (f"  ({flags})" if flags else ""),
        f"created    {when(summary['created_at'])} UTC",
        f"dataset    {d['name']}: {count(d['n_users'])} users, {count(d['n_items'])} items, "
        f"{count(d['n_interactions'])} interactions (fingerprint {d['fingerprint'][:12]})",
        f"teacher    {_teacher_source(summary.get('teacher_source'))}",
        f"towers     {towers}",
    ]
    if history := metrics.get("test_history"):
        lines.append(f"protocol   leave-one-out, test query = {history.replace('+', ' + ')} items")
    lines += [f"warning    {w.removeprefix('WARNING: ')}" for w in metrics.get("warnings", [])]
    lines += ["", *_models_table(summary), "", *_peer_lines(metrics)]
    lines += _gate_lines(metrics.get("gates"))
    if summary["parity"]:
        lines.append(f"parity     {_parity(summary['parity'])}")
    lines.append(f"retrieval  {_retrieval(summary['retrieval'])}")
    lines.append(f"files      {summary['files']} files, {mib(summary['bytes']['total'])} in {folder}")
    if summary.get("report"):
        lines.append(f"{INDENT}report: {', '.join(summary['report'])}")
    return lines


# diff: each section's title and how its values are written
_SECTIONS = (("test", "test metrics"), ("agreement", "agreement with the teacher"), ("parameters", "parameters"),
             ("bytes", "size"))  # fmt: skip


def _render(section: str, key: str, value: float | None) -> str:
    if section == "bytes":
        return mib(value)
    return count(value) if section == "parameters" or key.endswith("users") else score(value)


def _delta(section: str, key: str, delta: float | None) -> str:
    if delta is None:
        return MISSING
    if section == "bytes":
        return signed_mib(delta)
    return f"{round(delta):+,}" if section == "parameters" or key.endswith("users") else f"{delta:+.4f}"


def diff_lines(d: dict[str, Any], everything: bool = False) -> list[str]:
    """Two versions side by side: only the values that differ (as written), unless `everything`.

    A section where nothing differs says so in one line. Values are compared as printed (four
    decimals for scores, 0.1 MiB/KiB for sizes): a difference nobody can see is not listed."""
    a, b = d["a"], d["b"]
    rows: list[list[str] | str] = [
        ["", a, b, "delta"],
        ["created (UTC)", when(d["created_at"][a]), when(d["created_at"][b]), ""],
    ]
    fingerprints = d["dataset"]
    if d["same_dataset"]:
        rows.append(f"dataset: the same data (fingerprint {fingerprints[a][:12]})")
    else:
        rows.append(
            f"dataset: different data (fingerprints {fingerprints[a][:12]} and {fingerprints[b][:12]}): "
            "the metrics are not directly comparable"
        )
    for section, title in _SECTIONS:
        entries = []
        for key, row in d[section].items():
            va, vb = _render(section, key, row[a]), _render(section, key, row[b])
            delta = "" if va == vb else _delta(section, key, row["delta"])
            entries.append([f"  {key.replace('.', ' ', 1)}", va, vb, delta])
        differ = sum(1 for e in entries if e[1] != e[2])
        if not entries:
            rows.append(f"{title}: none recorded")
            continue
        rows.append(
            f"{title}: "
            + (f"{differ} of {len(entries)} differ" if differ else f"identical ({len(entries)} values)")
        )
        rows += [e for e in entries if everything or e[1] != e[2]]
    return table(rows, "lrrr")
