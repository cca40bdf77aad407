"""A student training step with torch's SparseAdam against LazyAdam (training/fit/lazy_adam.py).

    python -m bench.lazy_adam [--items 12101] [--rounds 3] [--steps 150] [--name lazy_adam]

One thread, alternating rounds, the same seeded batches for both: the shop preset's MLP student
(`configs/shop.toml`) with its item table on sparse gradients, and a step shaped like the distilled
student's (256 histories of 50 ids through the user tower, 100 candidates a row and 2,048 sampled
negatives from the item table, a softmax loss over them). Forward, backward and the optimiser step
(AdamW on the MLP, the named optimiser on the item table) are timed apart. Both optimisers give the
same weights (tests/training/fit/test_lazy_adam.py); only the time differs. Writes
bench/results/lazy_adam.{json,md}: each round, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.report import RESULTS_DIR, markdown_table, write_report
from training.config_file import load_config
from training.fit.lazy_adam import LazyAdam
from training.student.model import MLPStudent

OPTIMISERS: dict[str, type[torch.optim.Optimizer]] = {
    "SparseAdam": torch.optim.SparseAdam,
    "LazyAdam": LazyAdam,
}
PARTS = ("forward", "backward", "optimiser")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "shop.toml"


def measure(name: str, n_items: int, steps: int, warmup: int = 10) -> dict[str, float]:
    """Milliseconds a step of each part, averaged over `steps` after `warmup` steps."""
    cfg = load_config(CONFIG, [])
    torch.manual_seed(0)
    model = MLPStudent(n_items, cfg.student).train()
    model.item_emb.sparse = True
    dense = [p for p in model.parameters() if p is not model.item_emb.weight]
    opts = [
        torch.optim.AdamW(dense, lr=cfg.student.lr),
        OPTIMISERS[name]([model.item_emb.weight], lr=cfg.student.lr),
    ]
    batches = torch.Generator().manual_seed(1)
    spent = dict.fromkeys(PARTS, 0.0)
    for step in range(warmup + steps):
        hist = torch.randint(0, n_items, (256, cfg.student.history_len), generator=batches)
        cand = torch.randint(0, n_items, (256, 100), generator=batches)
        neg = torch.randint(0, n_items, (2048,), generator=batches)
        t0 = time.perf_counter()
        vec = model.user_vectors(hist)  # (B, d)
        s_cand = (vec[:, None, :] * model.item_vectors_of(cand)).sum(-1)  # (B, 100)
        s_neg = vec @ model.item_vectors_of(neg).T  # (B, 2048)
        loss = torch.logsumexp(torch.cat([s_cand, s_neg], 1), 1).mean() - s_cand[:, 0].mean()
        t1 = time.perf_counter()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        for opt in opts:
            opt.step()
        t3 = time.perf_counter()
        if step >= warmup:
            for part, seconds in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                spent[part] += seconds
    return {part: 1000 * s / steps for part, s in spent.items()}


def markdown(result: dict[str, Any]) -> str:
    rows = [
        [
            name,
            part,
            *(f"{r[name][part]:.2f}" for r in result["rounds"]),
            f"{result['median_ms'][name][part]:.2f}",
        ]
        for name in OPTIMISERS
        for part in (*PARTS, "step")
    ]
    ratio = result["ratio_lazy_over_sparse"]
    return "\n".join(
        [
            f"# A student step: SparseAdam against LazyAdam, {result['n_items']:,} items",
            "",
            f"Command: `{result['command']}`. One thread, {len(result['rounds'])} alternating rounds of "
            f"{result['steps']} steps, the same seeded batches; ms a step.",
            "",
            markdown_table(
                ["optimiser", "part", *(f"round {i + 1}" for i in range(len(result["rounds"]))), "median"],
                rows,
            ),
            "",
            f"LazyAdam's time over SparseAdam's, medians: the optimiser step {ratio['optimiser']:.2f}, "
            f"the whole step {ratio['step']:.2f}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lazy_adam", description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=12_101, help="catalogue size (Amazon Beauty's: 12,101)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--name", default="lazy_adam", help="the results' file name (bench/results/<name>.*)")
    args = p.parse_args(argv)
    if args.items < 2 or args.rounds < 1 or args.steps < 1:
        p.error("--items must be >= 2, --rounds and --steps >= 1")
    torch.set_num_threads(1)
    rounds = []
    for _ in range(args.rounds):
        row = {name: measure(name, args.items, args.steps) for name in OPTIMISERS}
        for parts in row.values():
            parts["step"] = sum(parts[part] for part in PARTS)
        rounds.append(row)
    median = {
        n: {k: statistics.median(r[n][k] for r in rounds) for k in (*PARTS, "step")} for n in OPTIMISERS
    }
    result = {
        "benchmark": "lazy_adam",
        "command": " ".join(["python -m bench.lazy_adam", *(sys.argv[1:] if argv is None else argv)]),
        "n_items": args.items,
        "steps": args.steps,
        "rounds": rounds,
        "median_ms": median,
        "ratio_lazy_over_sparse": {
            k: median["LazyAdam"][k] / median["SparseAdam"][k] for k in ("optimiser", "step")
        },
    }
    _, md_path = write_report(args.name, result, markdown(result), args.out)
    print(md_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
