"""The retrain benchmark's outputs: bench/results/retrain_<dataset>.json, .md and .png, with the checks
the retraining job must pass (warm quality and time against cold, drift over a chain of warm
retrains, new products recommendable after one retrain, no holdout in any training data)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import RESULTS_DIR, mean_std
from core.files import open_atomic

NDCG = "ndcg@10"
QUALITY_SHARE, TIME_SHARE, DRIFT = (
    0.99,
    0.30,
    0.01,
)  # warm >= 99% of cold NDCG in <= 30% of its time; chain within 1%


def _ndcg(seed: dict[str, Any], step: str) -> float | None:
    row = seed["ranked"].get(step)
    return None if row is None else float(row["student"][NDCG])


def _seconds(seed: dict[str, Any], step: str, what: str = "wall_seconds") -> float | None:
    step_record = seed["steps"].get(step)
    return None if not step_record or step_record["returncode"] != 0 else float(step_record[what])


def checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: PASS/FAIL and the numbers, per seed."""
    seeds = result["seeds"]
    rows = []

    def add(name: str, per_seed: list[tuple[int, bool, str]]) -> None:
        ok = bool(per_seed) and all(p for _, p, _ in per_seed)
        numbers = "; ".join(f"seed {s}: {text}" for s, _, text in per_seed) or "no seed ran it"
        rows.append({"check": name, "result": "PASS" if ok else "FAIL", "numbers": numbers})

    quality, time_, drift, new, leak = [], [], [], [], []
    for seed in seeds:
        s, warm, cold = seed["seed"], _ndcg(seed, "warm1"), _ndcg(seed, "cold1")
        if warm is not None and cold is not None:
            quality.append((s, warm >= QUALITY_SHARE * cold, f"{warm:.4f} vs {cold:.4f} ({warm / cold:.1%})"))
        tw, tc = _seconds(seed, "warm1"), _seconds(seed, "cold1")
        cw, cc = _seconds(seed, "warm1", "cpu_seconds"), _seconds(seed, "cold1", "cpu_seconds")
        if tw and tc:
            time_.append(
                (
                    s,
                    tw <= TIME_SHARE * tc,
                    f"wall {tw:.0f} s vs {tc:.0f} s ({tw / tc:.1%}), CPU {cw:.0f} s vs {cc:.0f} s ({cw / cc:.1%})",
                )
            )
        chain = [n for n in seed["ranked"] if n.startswith("warm")]
        if len(chain) > 1:
            last, first = _ndcg(seed, chain[-1]), _ndcg(seed, "warm1")
            assert last is not None and first is not None
            drift.append(
                (
                    s,
                    abs(last - first) <= DRIFT * first,
                    f"{chain[-1]} {last:.4f} vs warm1 {first:.4f} ({last / first - 1:+.2%})",
                )
            )
        if (row := seed["ranked"].get("warm1")) is not None:
            n = row["new_products"]
            new.append(
                (
                    s,
                    n["in_some_top10"] > 0,
                    f"{n['in_some_top10']} of {n['items']} new products in some top 10, in {n['answers_with_one']} answers",
                )
            )
    for s, check in result.get("leak_check", {}).items():
        leak.append(
            (
                int(s),
                check["test_and_valid_rows_in_day0"] == 0,
                f"{check['test_and_valid_rows_in_day0']} of {check['evaluated_users']} users' test/validation rows in day 0",
            )
        )
    add(f"warm retrain student {NDCG} >= {QUALITY_SHARE:.0%} of the cold retrain's", quality)
    add(f"warm retrain wall time <= {TIME_SHARE:.0%} of the cold retrain's", time_)
    add(f"the last warm retrain in a row within {DRIFT:.0%} of the first", drift)
    add("new products recommendable after one warm retrain", new)
    add("no day-1 test or validation item in day 0's log", leak)
    return rows


def summary_tables(result: dict[str, Any]) -> list[str]:
    """Markdown: day-1 student NDCG@10 per step (mean ± std over seeds), times, the new products, refit."""
    seeds = result["seeds"]
    steps = list(dict.fromkeys(n for seed in seeds for n in seed["ranked"]))
    out = [
        "| version (ranked on day 1's holdout) | student ndcg@10 | hr@10 | coverage@10 | seeds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for step in steps:
        rows = [seed["ranked"][step]["student"] for seed in seeds if step in seed["ranked"]]
        cells = [mean_std([r[m] for r in rows]) for m in (NDCG, "hr@10", "coverage@10")]
        out.append(
            f"| {step} | "
            + " | ".join(f"{c['mean']:.4f} ± {c['std']:.4f}" for c in cells)
            + f" | {len(rows)} |"
        )
    out += ["", "| step | wall s | CPU s | seeds |", "| --- | --- | --- | --- |"]
    for step in dict.fromkeys(n for seed in seeds for n in seed["steps"]):
        walls = [v for seed in seeds if (v := _seconds(seed, step)) is not None]
        cpus = [v for seed in seeds if (v := _seconds(seed, step, "cpu_seconds")) is not None]
        if walls:
            w, c = mean_std(walls), mean_std(cpus)
            out.append(
                f"| {step} | {w['mean']:.0f} ± {w['std']:.0f} | {c['mean']:.0f} ± {c['std']:.0f} | {len(walls)} |"
            )
    out += [
        "",
        "New products (first bought on day 1), per version:",
        "",
        "| seed | version | new products | in some top 10 | answers holding one | test users buying one | their HR@10 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for seed in seeds:
        for step, row in seed["ranked"].items():
            n = row["new_products"]
            hr = "n/a" if n["hr@10_on_those"] is None else f"{n['hr@10_on_those']:.3f}"
            out.append(
                f"| {seed['seed']} | {step} | {n['items']} | {n['in_some_top10']} | {n['answers_with_one']} | {n['test_users_buying_one']} | {hr} |"
            )
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    """NDCG@10 on day 1 per version and seed, and wall seconds warm vs cold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = result["seeds"]
    steps = list(dict.fromkeys(n for seed in seeds for n in seed["ranked"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for seed in seeds:
        xs = [i for i, s in enumerate(steps) if s in seed["ranked"]]
        left.plot(
            xs, [seed["ranked"][steps[i]]["student"][NDCG] for i in xs], "o-", label=f"seed {seed['seed']}"
        )
    left.set_xticks(range(len(steps)), steps, rotation=30)
    left.set_ylabel("student NDCG@10, day 1 holdout")
    left.set_title(f"{result['dataset']}: every version on the same users")
    left.legend()
    names = ["warm1", "cold1"]
    walls = [[v for seed in seeds if (v := _seconds(seed, n)) is not None] for n in names]
    right.bar(
        names,
        [float(np.mean(w)) if w else 0.0 for w in walls],
        yerr=[float(np.std(w)) if w else 0.0 for w in walls],
    )
    right.set_ylabel("wall seconds (mean over seeds)")
    right.set_title("day-1 retrain: warm vs cold")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """retrain_<dataset>.json, .md and .png; returns the Markdown path."""
    name = f"retrain_{result['dataset']}"
    result["checks"] = checks(result)
    results_dir.mkdir(parents=True, exist_ok=True)
    with open_atomic(results_dir / f"{name}.json", "w") as fh:
        fh.write(json.dumps(result, indent=2, default=float) + "\n")
    plot(result, results_dir / f"{name}.png")
    lines = [
        f"# Retraining on {result['dataset']}: warm from the served version against cold, {len(result['seeds'])} seed(s)",
        "",
    ]
    lines += [result["protocol"], "", "## Checks", "", "| check | result | numbers |", "| --- | --- | --- |"]
    lines += [f"| {r['check']} | {r['result']} | {r['numbers']} |" for r in result["checks"]]
    lines += [
        "",
        "## Figures",
        "",
        *summary_tables(result),
        "",
        f"![day 1 NDCG@10 and wall time]({name}.png)",
        "",
    ]
    lines += ["## Commands", "", "```", *result["commands"], "```", ""]
    lines += [
        f"Machine: {platform.platform()}, {result['cores']} cores, python {platform.python_version()}; {result['note']}"
    ]
    with open_atomic(results_dir / f"{name}.md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return results_dir / f"{name}.md"
