"""What the service knows about known users, checked against the log itself: `python -m bench.served_history`.

Serves a published version (the real app, in process, a fresh history store seeded from the version)
and, for the first `--users` users of the log file the version was trained from:
  - every user's `GET /v1/users/{id}/history` must end with their last two log items (the validation
    and test interactions of the offline protocol), and equal their whole log;
  - `/v1/recommend` by `user_id` (k = `--k`, exclude_seen) must never return an item from their log.
With `--replay`, the version's holdout is replayed through `/v1/recommend` (student arm) with each
user's test query sent as an explicit history (core/holdout.py), on the users the report
ranked, and its HR@10 / NDCG@10 set beside the report's student figures: the same users and metric.

    python -m bench.served_history --models models --log orders.csv.gz --users 1500 --name beauty1500
Results: bench/results/served_history_<name>.{json,md,png}; exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import RESULTS_DIR, markdown_table, write_report

log = logging.getLogger(__name__)
BATCH = 256  # requests per /v1/recommend/batch call
STUDENT_ARM = {"X-Recdistill-Arm": "student"}  # app.experiment.assignment.FORCE_ARM_HEADER


def log_histories(path: Path, n_users: int | None, columns: Any = None) -> dict[str, list[str]]:
    """The first `n_users` users of the log file (by first appearance), each user's items oldest first
    (a stable sort on time: ties keep file order, as the pipeline orders them)."""
    from training.config import ColumnMap
    from training.data.tabular import read_log

    raw = read_log(Path(path), columns or ColumnMap())
    users, first = np.unique(raw.user, return_index=True)
    keep = set(users[np.argsort(first, kind="stable")][:n_users].tolist())
    rows = np.flatnonzero(np.isin(raw.user, list(keep)))
    rows = rows[np.lexsort((raw.timestamp[rows], raw.user[rows]))]
    out: dict[str, list[str]] = {}
    for user, item in zip(raw.user[rows].tolist(), raw.item[rows].tolist(), strict=True):
        out.setdefault(user, []).append(item)
    return out


@contextmanager
def served(models_dir: Path) -> Iterator[Any]:
    """The app serving models_dir/LATEST, lifespan running, with a history store of its own."""
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app

    with tempfile.TemporaryDirectory(prefix="served-history-") as tmp:
        settings = Settings(models_dir=models_dir, history_db=Path(tmp) / "history.sqlite3")  # type: ignore[call-arg]
        with TestClient(create_app(settings)) as client:
            yield client


def batched(client: Any, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every body through /v1/recommend/batch (student arm), answers in order."""
    answers: list[dict[str, Any]] = []
    for start in range(0, len(bodies), BATCH):
        r = client.post(
            "/v1/recommend/batch", json={"requests": bodies[start : start + BATCH]}, headers=STUDENT_ARM
        )
        r.raise_for_status()
        answers += r.json()["results"]
    return answers


def check_known_users(client: Any, logs: dict[str, list[str]], k: int) -> dict[str, Any]:
    """Histories against the log, and what a request by user_id returns, per known user."""
    ends, whole, shorter = 0, 0, []
    for user, items in logs.items():
        got = [
            h["item_id"]
            for h in client.get(f"/v1/users/{user}/history", params={"limit": 1000}).json()["items"]
        ]
        ends += got[-2:] == items[-2:]
        whole += got == items[-1000:]
        if got[-2:] != items[-2:] and len(shorter) < 5:
            shorter.append({"user_id": user, "log_tail": items[-3:], "history_tail": got[-3:]})
    answers = batched(client, [{"user_id": u, "k": k} for u in logs])
    from_log = [
        u for u, a in zip(logs, answers, strict=True) if {i["item_id"] for i in a["items"]} & set(logs[u])
    ]
    last_back = sum(
        logs[u][-1] in {i["item_id"] for i in a["items"]} for u, a in zip(logs, answers, strict=True)
    )
    return {
        "users": len(logs),
        "history_ends_with_last_two_log_items": ends,
        "history_equals_the_log": whole,
        "examples_not_ending_with_the_log": shorter,
        "k": k,
        "answers_with_an_item_from_the_log": len(from_log),
        "answers_with_the_last_log_item": last_back,
        "examples_with_a_log_item": from_log[:5],
    }


def replay(client: Any, models_dir: Path, k: int = 10) -> dict[str, Any]:
    """The holdout's reported rows replayed with explicit test queries: HR@k and NDCG@k from the
    test item's place in each answer, beside the report's student figures."""
    from core.holdout import read_holdout, replay_body, replay_words
    from core.manifest import load_manifest, read_latest

    version_dir = Path(models_dir) / str(read_latest(models_dir))
    manifest = load_manifest(version_dir)
    user_ids = np.load(version_dir / manifest.user_ids, allow_pickle=False).astype(str)
    item_ids = np.load(version_dir / manifest.item_ids, allow_pickle=False).astype(str)
    holdout = read_holdout(version_dir, str(manifest.holdout), user_ids, item_ids)
    rows = np.flatnonzero(holdout.reported).tolist()
    answers = batched(client, [replay_body(holdout, r, k) for r in rows])
    gains, hits = [], []
    for row, answer in zip(rows, answers, strict=True):
        served_items = [i["item_id"] for i in answer["items"]]
        target = str(holdout.items[row])
        place = served_items.index(target) if target in served_items else None
        hits.append(place is not None)
        gains.append(0.0 if place is None else 1.0 / np.log2(place + 2))
    report = manifest.metrics.get("test", {}).get("student", {})
    return {
        "version": manifest.version,
        "query": replay_words(holdout),
        "test_history": holdout.test_history,
        "users": len(rows),
        "replayed": {f"hr@{k}": float(np.mean(hits)), f"ndcg@{k}": float(np.mean(gains))},
        "report_student": {m: report.get(m) for m in (f"hr@{k}", f"ndcg@{k}", "users")},
    }


def render(payload: dict[str, Any], plot: str | None) -> str:
    known = payload["known_users"]
    lines = [
        f"# What the service knows about known users: {payload['name']}",
        f"Version `{payload['version']}` served in process; log `{payload['log']}`, its first {known['users']:,} users.",
        *([payload["note"]] if payload.get("note") else []),
        markdown_table(
            ["check", "users", "passed"],
            [
                ["history ends with the user's last two log items", known["users"], known["history_ends_with_last_two_log_items"]],
                ["history equals the user's whole log", known["users"], known["history_equals_the_log"]],
                [f"/v1/recommend by user_id (k {known['k']}) returns no log item", known["users"],
                 known["users"] - known["answers_with_an_item_from_the_log"]],
            ],
        ),
        f"Answers that returned the user's last log item: {known['answers_with_the_last_log_item']}.",
    ]  # fmt: skip
    if rep := payload.get("replay"):
        r, s = rep["replayed"], rep["report_student"]
        lines += [
            "## The holdout replayed through the service",
            f"{rep['query']}; student arm; the {rep['users']:,} users the report ranked ({rep['test_history']}).",
            markdown_table(
                ["figure", "report (offline, PyTorch)", "replayed (service, ONNX)"],
                [[m, f"{s[m]:.4f}" if s.get(m) is not None else "-", f"{r[m]:.4f}"] for m in r],
            ),
        ]
        if plot:
            lines.append(f"![report vs replay]({plot})")
    lines.append(f"Command: `{payload['command']}`.")
    return "\n\n".join(lines)


def plot_replay(rep: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(rep["replayed"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = np.arange(len(metrics))
    ax.bar(
        xs - 0.18, [rep["report_student"][m] or 0.0 for m in metrics], width=0.36, label="report (offline)"
    )
    ax.bar(xs + 0.18, [rep["replayed"][m] for m in metrics], width=0.36, label="replayed (service)")
    ax.set_xticks(xs, metrics)
    ax.set_title(f"Student on the holdout, {rep['users']:,} users")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args: argparse.Namespace, command: str) -> tuple[dict[str, Any], bool]:
    logs = log_histories(args.log, args.users)
    with served(args.models) as client:
        payload: dict[str, Any] = {
            "name": args.name, "log": str(args.log), "command": command, "note": args.note,
            "version": client.get("/v1/models").json()["version"],
            "known_users": check_known_users(client, logs, args.k),
        }  # fmt: skip
        if args.replay:
            payload["replay"] = replay(client, args.models)
    known = payload["known_users"]
    ok = (
        known["history_ends_with_last_two_log_items"] == known["users"]
        and known["answers_with_an_item_from_the_log"] == 0
    )
    return payload, ok


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    p = argparse.ArgumentParser(prog="python -m bench.served_history", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, required=True, help="the models dir whose LATEST is checked")
    p.add_argument("--log", type=Path, required=True, help="the interaction log the version was trained from")
    p.add_argument("--users", type=int, default=None, help="the log's first N users (default: all)")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--replay", action="store_true", help="also replay the holdout with explicit test queries")
    p.add_argument("--name", default="run")
    p.add_argument("--note", default="", help="how the version was built, for the results file")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    command = (
        "python -m bench.served_history " + " ".join(argv if argv is not None else sys.argv[1:])
    ).strip()
    payload, ok = run(args, command)
    name = f"served_history_{args.name}"
    png = plot_replay(payload["replay"], Path(args.out) / f"{name}.png").name if "replay" in payload else None
    write_report(name, payload, render(payload, png), Path(args.out))
    log.info("%s: %s", name, "all checks passed" if ok else "CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
