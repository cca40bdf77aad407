"""Shared output of every benchmark: `bench/results/<name>.json` (the numbers) and `<name>.md` (a table).

Aggregates are computed here once (mean and sample standard deviation over seeds) so that every
benchmark reports "mean ± std" the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.files import open_atomic

RESULTS_DIR = Path("bench/results")


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """{"mean", "std", "values"}; std is the sample std (ddof=1), 0.0 for a single value."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("mean_std: no values")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "values": [float(v) for v in arr]}


def aggregate(runs: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per metric mean_std over runs (one dict of metrics per seed); every run must name the same metrics."""
    if not runs:
        raise ValueError("aggregate: no runs")
    keys = list(runs[0])
    for i, run in enumerate(runs):
        if set(run) != set(keys):
            raise ValueError(f"aggregate: run {i} has metrics {sorted(run)}, expected {sorted(keys)}")
    return {key: mean_std([run[key] for run in runs]) for key in keys}


def fmt_mean_std(stat: dict[str, Any], digits: int = 4) -> str:
    """'0.0671 ± 0.0012' (the ± part is dropped for a single value)."""
    if len(stat.get("values", [])) <= 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed and '|' is escaped."""
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"markdown_table: row {i} has {len(row)} cells, expected {len(headers)}")

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), "| " + " | ".join("---" for _ in headers) + " |", *map(line, rows)])


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null rather than produce a file other tools refuse."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(path, "w") as fh:  # readers see the old results or the new ones, never half
        fh.write(text)


def write_report(
    name: str, payload: dict[str, Any], markdown: str, out_dir: Path = RESULTS_DIR
) -> tuple[Path, Path]:
    """Write `<out_dir>/<name>.json` and `<name>.md` atomically; returns both paths."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"write_report: bad benchmark name {name!r}")
    json_path, md_path = Path(out_dir) / f"{name}.json", Path(out_dir) / f"{name}.md"
    text = json.dumps(
        _clean(json.loads(json.dumps(payload, default=_json_default))), indent=2, sort_keys=False
    )
    _atomic_write(json_path, text + "\n")
    _atomic_write(md_path, markdown.rstrip() + "\n")
    return json_path, md_path
