"""bench/lazy_adam.py: both optimisers timed on a tiny catalogue, the report written (no time asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.lazy_adam import OPTIMISERS, PARTS, main


def test_the_bench_times_both_optimisers_by_part_and_writes_json_and_markdown(tmp_path: Path, capsys) -> None:
    assert main(["--items", "300", "--rounds", "2", "--steps", "2", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "lazy_adam.md")
    result = json.loads((tmp_path / "lazy_adam.json").read_text())
    assert len(result["rounds"]) == 2 and result["n_items"] == 300
    for row in result["rounds"]:
        for name in OPTIMISERS:
            assert row[name]["step"] == sum(row[name][part] for part in PARTS)
    m = result["median_ms"]
    assert (
        result["ratio_lazy_over_sparse"]["optimiser"]
        == m["LazyAdam"]["optimiser"] / m["SparseAdam"]["optimiser"]
    )
    text = (tmp_path / "lazy_adam.md").read_text()
    assert "| LazyAdam | optimiser |" in text and "300 items" in text
