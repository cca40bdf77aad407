"""The teacher's tag means, `embedding_bag` (training) against gather-and-sum (the ONNX export's form).

    python -m bench.tag_means --teacher .recdistill/work/teacher.pt [--rounds 3] [--steps 20]

Times forward + backward on one thread, in alternating rounds, of what a teacher training step runs
through the item tower: the item vectors of a batch's history ids (the shop preset's 128 x 50,
left-padded like a shop log's short histories) plus its sampled negatives, and the user tower's
whole pass over the same histories. Both forms give the same values
(tests/training/teacher/test_two_tower.py); only the time differs. Writes
bench/results/tag_means.{json,md}: medians of the rounds and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from bench.report import RESULTS_DIR, markdown_table, write_report
from training.teacher.two_tower import TwoTowerTeacher, load_teacher

FORMS = ("embedding_bag", "gather")


def _timed(fn: Callable[[], None], steps: int) -> float:
    """Milliseconds per call of `fn`, after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps * 1000


def measure(
    teacher: TwoTowerTeacher, batch: int = 128, history: int = 50, real: int = 20, negatives: int = 4096,
    rounds: int = 3, steps: int = 20, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """ms per forward + backward of the item tower and of the user tower, per form, in alternating rounds."""
    torch.set_num_threads(1)
    teacher.train()
    gen = torch.Generator().manual_seed(seed)
    hist = torch.randint(0, teacher.n_items, (batch, history), generator=gen)
    hist[:, : history - real] = teacher.padding_value
    ids = torch.cat([hist.flatten(), torch.randint(0, teacher.n_items, (negatives,), generator=gen)])
    users = torch.randint(0, teacher.n_users, (batch,), generator=gen) if teacher.takes_user_id else None

    def item_tower() -> None:
        teacher.zero_grad(set_to_none=True)
        teacher.item_vectors_of(ids).sum().backward()

    def user_tower() -> None:
        teacher.zero_grad(set_to_none=True)
        teacher.sequence_vectors(users, hist).sum().backward()

    times: dict[str, dict[str, list[float]]] = {"item_tower": {}, "user_tower": {}}
    for _ in range(rounds):
        for form in FORMS:
            with mock.patch("torch.onnx.is_in_onnx_export", return_value=form == "gather"):
                for part, fn in (("item_tower", item_tower), ("user_tower", user_tower)):
                    times[part].setdefault(form, []).append(_timed(fn, steps))
    medians = {part: {f: statistics.median(v) for f, v in by.items()} for part, by in times.items()}
    return {
        "shape": {"batch": batch, "history": history, "real_items": real, "negatives": negatives},
        "teacher": {"n_items": teacher.n_items, "tags_per_item_max": int(teacher.item_attr.shape[1]),
                    "dim": teacher.cfg.dim},
        "rounds": rounds, "steps": steps, "ms": times, "median_ms": medians,
        "ratio_bag_over_gather": {p: m["embedding_bag"] / m["gather"] for p, m in medians.items()},
    }  # fmt: skip


def markdown(result: dict[str, Any], source: str) -> str:
    rows = [
        [
            part,
            f"{m['embedding_bag']:.1f}",
            f"{m['gather']:.1f}",
            f"{result['ratio_bag_over_gather'][part]:.2f}",
        ]
        for part, m in result["median_ms"].items()
    ]
    s, t = result["shape"], result["teacher"]
    return "\n".join([
        "# The teacher's tag means: embedding_bag against gather-and-sum",
        "",
        f"Teacher `{source}`: {t['n_items']} items, up to {t['tags_per_item_max']} tags each, dim {t['dim']}. "
        f"Forward + backward on one thread, {result['rounds']} alternating rounds of {result['steps']} steps; "
        f"a batch of {s['batch']} histories of {s['history']} ids ({s['real_items']} real, the rest left padding) "
        f"and {s['negatives']} negatives. Medians of the rounds, ms per step.",
        "",
        markdown_table(["part", "embedding_bag ms", "gather ms", "bag / gather"], rows),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tag_means", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher", type=Path, required=True, help="a teacher checkpoint (work_dir/teacher.pt)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    result = measure(load_teacher(args.teacher), rounds=args.rounds, steps=args.steps)
    json_path, md_path = write_report("tag_means", result, markdown(result, args.teacher.name), args.out)
    print(md_path)  # noqa: T201 - the benchmark's one line of output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
