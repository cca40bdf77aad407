"""The popularity peer alone, ranked exactly as a pipeline's report ranks it: `python -m bench.popularity_peer`.

Same data, split, evaluated users (eval.max_users's seeded sample), test query and exclusions as
`training.evaluate.models.evaluate_all`, without training anything: seconds instead of a whole pipeline run.
It is how the results files' popularity rows were recomputed when the ranking's tie rule changed
(an item scoring equal to the target counts against the model; the peer's integer counts tie a lot).

    python -m bench.popularity_peer --config configs/shop.toml \\
        --set data.path=../shared/data/amazon-beauty/interactions.csv.gz \\
        --set data.items_path=../shared/data/amazon-beauty/items.csv.gz
Prints one JSON object: the config's protocol, the users ranked and the metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def popularity_metrics(config: Path, overrides: Sequence[str], batch_size: int | None = None) -> dict:
    """The popularity peer's test metrics under `config` + `overrides` (batch_size: rows scored at once)."""
    from training.config_file import load_config
    from training.data.split import validation_split
    from training.evaluate.models import evaluate_models
    from training.evaluate.scoring import popularity_score_fn
    from training.pipeline import load_data

    cfg = load_config(config, list(overrides))
    e = cfg.eval
    _, split = load_data(cfg)
    sample = validation_split(split, e.max_users, cfg.seed)  # the report's users
    models = {"popularity": (popularity_score_fn(split.item_popularity()), 1)}
    metrics, _ = evaluate_models(
        sample, models, e.k, e.recall_k, batch_size or e.batch_size, test_history=e.test_history
    )
    return {"config": str(config), "overrides": list(overrides), "test_history": e.test_history,
            "test": metrics["popularity"]}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.popularity_peer", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    p.add_argument("--batch-size", type=int, default=None, help="rows scored at once (memory: rows x items)")
    args = p.parse_args(argv)
    print(json.dumps(popularity_metrics(args.config, args.set, args.batch_size), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
