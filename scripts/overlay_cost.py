"""What the live catalogue overlay costs a request: `prepare` alone and `prepare` + top-k, on a
100k-item random version (tests/fixtures `random_arrays`, exact retrieval, one BLAS thread), with an
empty overlay and with 100, 1,000 and 10,000 unavailable items. CPU time of this process per request
(time.process_time: other processes on the machine count less), the minimum of 15 interleaved repeats.

    PYTHONPATH=. .venv/bin/python scripts/overlay_cost.py [--before OLD_RECOMMENDER.py]

`--before`: also time another copy of app/engine/recommender.py (e.g. `git show REV:app/engine/recommender.py
> /tmp/old.py`), the code without the overlay. The version is built once under /tmp/recdistill-overlay-cost.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.engine.catalogue import build_view
from app.engine.catalogue_live import LiveCatalogue
from app.engine.loading import load_version
from app.engine.recommender import limit_blas_threads, prepare, recommend_batch
from app.stores.records import CatalogueEntry
from tests.fixtures.tiny_model import build_version, random_arrays

WORK = Path("/tmp/recdistill-overlay-cost")


def timed(fs: dict[str, Callable[[], object]], calls: int, repeats: int = 15) -> dict[str, float]:
    best = dict.fromkeys(fs, float("inf"))
    for _ in range(repeats):  # interleaved: every variant sees the same machine load
        for name, f in fs.items():
            started = time.process_time()
            for _ in range(calls):
                f()
            best[name] = min(best[name], (time.process_time() - started) / calls * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None)
    args = parser.parse_args()
    limit_blas_threads()
    if not (WORK / "v1" / "manifest.json").is_file():
        build_version(WORK, "v1", random_arrays(100_000))
    model = load_version(WORK / "v1", retrieval="exact")
    rng = np.random.default_rng(0)
    history = [str(model.item_ids[i]) for i in rng.integers(0, model.n_items, 20)]
    options = {"history": history, "k": 10, "exclude_seen": True}
    live = LiveCatalogue()
    preps: dict[str, Callable[[], object]] = {
        "empty overlay": lambda: prepare(model, view=live.view(model), **options)
    }  # type: ignore[arg-type]
    for count in (100, 1000, 10000):
        gone = rng.choice(model.n_items, count, replace=False)
        view = build_view(model, [CatalogueEntry(str(model.item_ids[i]), available=False) for i in gone], 1)
        preps[f"{count} unavailable"] = lambda view=view: prepare(model, view=view, **options)  # type: ignore[arg-type]
    full: dict[str, Callable[[], object]] = {
        name: (lambda f=f: recommend_batch([f().query]))
        for name, f in preps.items()  # type: ignore[attr-defined]
    }
    if args.before is not None:
        spec = importlib.util.spec_from_file_location("recommender_before", args.before)
        assert spec is not None and spec.loader is not None
        before = importlib.util.module_from_spec(spec)
        sys.modules["recommender_before"] = before
        spec.loader.exec_module(before)
        preps = {"before": lambda: before.prepare(model, **options), **preps}
        full = {"before": lambda: before.recommend_batch([before.prepare(model, **options).query]), **full}
    lines = ["| variant | prepare µs | prepare + top-k µs |", "| --- | --- | --- |"]
    alone, both = timed(preps, 200), timed(full, 30)
    lines += [f"| {name} | {alone[name]:.1f} | {both[name]:.0f} |" for name in preps]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
