"""The one screen `recdistill retrain` ends with: what came in, what was gated, what is now the
candidate, and the exact commands to start its experiment and to promote it. A refused run prints it
too, with the failed gates and what was left unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERVICE = "localhost:8000"  # in the printed commands: replace with a replica's address
AUTH = '-H "Authorization: Bearer $RECDISTILL_ADMIN_TOKEN"'
METRICS = ("ndcg@10", "hr@10", "recall@50", "coverage@10")


@dataclass(frozen=True)
class Intake:
    """What a retrain collected before training (recdistill/retrain.py)."""

    served: str  # the version serving when the retrain started
    events: Any  # core.manifest.EventsIn, None: no event
    items_file: Path | None  # the item file with the catalogue overlay, None: the configured one
    registered: int  # products registered in the live catalogue


def _day(ts: int | None) -> str:
    return "?" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def intake_lines(cfg: Any, intake: Intake) -> list[str]:
    e = intake.events
    if e is None:
        came = "came in: no event logged by the service"
    else:
        came = (
            f"came in: {e.rows:,} events ({_day(e.first)} to {_day(e.last)} UTC), {e.new_users:,} new users, "
            f"{e.new_items:,} new items (new to the served {intake.served})"
        )
    items = f"; item file with the catalogue overlay ({intake.registered} registered): {intake.items_file}"
    start = "trained cold" if cfg.warm_start == "none" else f"warm start from {cfg.warm_start}"
    return [came + (items if intake.items_file else ""), f"{start}; gated against the served {intake.served}"]


def _table(rows: dict[str, dict[str, float]]) -> list[str]:
    width = max(14, *(len(n) + 1 for n in rows))
    out = [f"{'test':<{width}}" + "".join(f"{m:>13}" for m in METRICS)]
    for name, row in rows.items():
        out.append(f"{name:<{width}}" + "".join(f"{row.get(m, float('nan')):>13.4f}" for m in METRICS))
    return out


def next_steps(version: str, models: Path, promoted: bool) -> list[str]:
    """The commands for the experiment and the promotion, exactly as they are typed."""
    if promoted:
        return [
            "next: every replica serves it within one poll (unless a pin holds them: recdistill models unpin)"
        ]
    name = f"retrain-{version}"
    return [
        "next: every replica loads it as the candidate within one poll and shadows it:",
        f"  curl -s {SERVICE}/v1/shadow/report",
        "start the experiment (10% of users on the candidate):",
        f"  curl -s -X POST {SERVICE}/admin/experiments {AUTH} -H 'content-type: application/json' "
        f'-d \'{{"name": "{name}", "arms": "serving_vs_candidate", "candidate_share": 0.1}}\'',
        f"  curl -s '{SERVICE}/v1/ab/report?experiment={name}'",
        "promote when the verdict says so:",
        f"  curl -s -X POST {SERVICE}/admin/experiments/{name}/stop {AUTH}",
        f"  recdistill models promote {version} --models {models}",
    ]


def retrain_summary(cfg: Any, intake: Intake, result: Any, candidate: str | None, seconds: float) -> str:
    """The published run's screen (`candidate`: what became of the candidate; None with --promote)."""
    from training.evaluate.gates import gate_lines

    version, metrics, m = result.version_dir.name, result.metrics, result.manifest
    where = f"LATEST -> {version}" if candidate is None else f"the candidate: {candidate}"
    lines = [f"retrain: published {version} ({seconds:.0f} s); {where}", *intake_lines(cfg, intake)]
    d = m.dataset
    lines.append(f"data: {d.n_users:,} users, {d.n_items:,} items, {d.n_interactions:,} interactions")
    if (warm := result.warm) is not None:
        tags = max(warm.tag_initialised.values(), default=0)
        lines.append(
            f"warm start: {warm.new_items:,} new items ({tags:,} started from their tags), {warm.new_users:,} new users"
        )
    rows = {name: metrics["test"][name] for name in ("student", "teacher") if name in metrics["test"]}
    if served := metrics.get("served"):
        rows[f"served {served['version']}"] = served["student"]
    lines += ["", *_table(rows), ""]
    gates = metrics.get("gates", {})
    lines += [f"gates {gates.get('status')}:", *(f"  {line}" for line in gate_lines(gates))]
    timings = result.seconds
    lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    lines += next_steps(version, Path(cfg.models_dir), candidate is None)
    return "\n".join(lines)


def refused_summary(cfg: Any, intake: Intake, exc: Any, seconds: float) -> str:
    """The refused run's screen: the failed gates, and that nothing changed."""
    from training.evaluate.gates import gate_lines
    from training.workdir import REFUSED_FILE

    lines = [
        f"retrain: NOT published ({seconds:.0f} s): a gate failed; LATEST and the candidate are unchanged",
        *intake_lines(cfg, intake),
        f"gates {exc.gates.get('status')}:",
        *(f"  {line}" for line in gate_lines(exc.gates)),
        f"what the refused version measured: {Path(cfg.work_dir) / REFUSED_FILE}",
    ]
    return "\n".join(lines)
