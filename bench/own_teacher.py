"""ALS as the user's own teacher: implicit ALS tables, imported with `teacher.source = "tables:..."`,
distilled into the history-MLP student, beside the scratch student and the ALS model itself.

    python -m bench.own_teacher --data ../shared/data/amazon-beauty --set budget_minutes=30

1. ALS is tuned and fitted by training/evaluate/peers.py exactly as the report's ALS peer is (tuned on the
   validation item, refitted on train + validation items for the standard test query) and written
   as embedding tables: users.parquet (user_id, vector), items.npy + item_ids.npy, als.toml.
2. `recdistill teacher import tables:als.toml` checks them; `recdistill pipeline` distils them
   (the commands a user types, as subprocesses, output in `.recdistill/bench/own_teacher/`).
3. The published version's report is read back; the student is also scored through its published
   ONNX query graph on anonymous sessions (the test histories, no user id), which the lookup teacher
   cannot score at all (it knows users by id only).

What each model saw: the ALS tables were fitted on train + validation interactions (so the soft
labels of a train pair come from a user vector that also saw that user's later items and the
validation item); the students trained on train pairs; every model's test query is train items +
the validation item; no model saw a test item. Writes bench/results/own_teacher_<dataset>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality.run import dataset_spec, recdistill_command
from bench.report import markdown_table, write_report

ROOT = Path(".recdistill/bench/own_teacher")
MODELS = ("teacher", "student", "scratch", "als", "popularity")


def export_als_tables(cfg: Any, folder: Path, fit_on: str = "train+valid") -> dict[str, Any]:
    """Tune and fit ALS as training.evaluate.models.fit_peers does; write its factors as tables + a spec.

    fit_on "train+valid": the peer's own refit for the standard test query (the tables are then
    exactly the report's ALS peer); "train": the tuned point fitted on train interactions only, so
    no soft label carries a validation item (the teacher row then cannot use the query's
    validation item: a lookup ignores the history).
    """
    from training.data.split import validation_split
    from training.evaluate.peers import als_peer, fit_als
    from training.pipeline import load_data
    from training.teacher.spec import write_tables

    data, split = load_data(cfg)
    e = cfg.eval
    sample = validation_split(split, e.max_users, cfg.seed)
    peer = als_peer(split, e.als.grid(), cfg.seed, cfg.threads or 0, e.test_history,
                    e.k, e.recall_k, e.batch_size, eval_split=sample)  # fmt: skip
    model = peer.model  # the refit on train + validation items (the test query's interactions)
    if fit_on == "train":
        model = fit_als(split, peer.tuning.best, cfg.seed, cfg.threads or 0, with_valid=False)
    users = model.user_factors
    spec = write_tables(folder, data.user_ids, users, data.catalog.item_ids, model.item_factors, "als.toml")
    return {"als": peer.record(), "tables_fitted_on": fit_on, "spec": str(spec),
            "users": int(users.shape[0]), "dim": int(users.shape[1])}  # fmt: skip


def run(argv: list[str], log_path: Path) -> tuple[int, float, str]:
    start = time.perf_counter()
    with open(log_path, "w") as fh:
        rc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    return rc, time.perf_counter() - start, log_path.read_text()[-2000:]


def served_anonymous(version_dir: Path, cfg: Any) -> dict[str, Any]:
    """NDCG@10 of the published student graph on history-only sessions; the lookup teacher's share."""
    import onnxruntime as ort

    from core.manifest import HISTORY_INPUT, USER_VECTOR_OUTPUT, load_manifest
    from training.evaluate.ranking import evaluate
    from training.pipeline import load_data

    manifest = load_manifest(version_dir)
    card = manifest.student
    sess = ort.InferenceSession(str(version_dir / card.user.file), providers=["CPUExecutionProvider"])
    items = np.load(version_dir / card.item_vectors, allow_pickle=False)

    def score(users: np.ndarray, histories: np.ndarray) -> np.ndarray:  # no user id: a session
        (vec,) = sess.run([USER_VECTOR_OUTPUT], {HISTORY_INPUT: histories.astype(np.int64)})
        return vec @ items.T

    _, split = load_data(cfg)
    metrics = evaluate(score, split, "test", card.history_len, cfg.eval.k, cfg.eval.recall_k,
                       test_history=cfg.eval.test_history)  # fmt: skip
    known = manifest.teacher.known_users
    return {
        "student_onnx_anonymous": metrics,
        "sessions": int(len(split.test_users)),
        "teacher_can_score": 0,  # a lookup teacher needs a user id; a session has none
        "teacher_query": "user_lookup" if known else "model",
    }


def _latest_report(folder: Path) -> tuple[Path | None, dict[str, Any]]:
    """(the newest published version, its report.json), else (None, work_dir/refused.json)."""
    versions = sorted(p for p in (folder / "models").glob("*") if (p / "report.json").is_file())
    if versions:
        return versions[-1], json.loads((versions[-1] / "report.json").read_text())
    return None, json.loads((folder / "work" / "refused.json").read_text())


def main(argv: list[str] | None = None) -> int:
    from training.config_file import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/amazon-beauty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--als-fit", choices=["train+valid", "train"], default="train+valid",
                        help="what the ALS tables are fitted on (see export_als_tables)")  # fmt: skip
    parser.add_argument("--reuse", action="store_true",
                        help="keep the tables and the trained students of an earlier run (no training)")  # fmt: skip
    args = parser.parse_args(argv)
    ds = dataset_spec(args.data)
    tag = "" if args.als_fit == "train+valid" else "_train_only"
    folder = ROOT / ds.name / f"seed{args.seed}{tag}"
    tables = folder / "tables"
    sets = [*ds.data_sets, f"seed={args.seed}", f"models_dir={folder / 'models'}",
            f"work_dir={folder / 'work'}", *args.set]  # fmt: skip
    cfg = load_config(ds.config, sets)
    source = f"teacher.source=tables:{tables / 'als.toml'}"
    flags = [x for s in [*sets, source] for x in ("--set", s)]
    base = [*recdistill_command()]
    payload: dict[str, Any] = {"benchmark": "own_teacher", "dataset": ds.name, "seed": args.seed,
                               "protocol": cfg.eval.test_history, "als_fitted_on": args.als_fit}  # fmt: skip
    if not args.reuse:
        t0 = time.perf_counter()
        als = export_als_tables(cfg, tables, args.als_fit)
        (tables / "als.json").write_text(json.dumps(als, indent=2, default=float))
        payload["als_export_seconds"] = time.perf_counter() - t0
        check_rc, _, check_out = run([*base, "teacher", "import", f"tables:{tables / 'als.toml'}",
                                      "--config", str(ds.config), *flags], folder / "import.log")  # fmt: skip
        payload["import_check"] = {"exit": check_rc, "output": check_out.strip().splitlines()[-3:]}
        rc, seconds, tail = run([*base, "pipeline", "--config", str(ds.config), *flags, "--no-progress"],
                                folder / "pipeline.log")  # fmt: skip
        payload |= {"pipeline_exit": rc, "pipeline_seconds": seconds}
        if rc not in (0, 3):
            payload["pipeline_tail"] = tail
    version, report = _latest_report(folder)
    if version is None:  # a publish gate refused it: publish anyway (from work_dir) to serve it below
        payload["gates"] = report.get("gates")
        rc, _, _ = run([*base, "export", "--config", str(ds.config), *flags, "--set", "publish.require_gates=false"],
                       folder / "export.log")  # fmt: skip
        payload["published_despite_gates"] = rc == 0
        version, report = _latest_report(folder)
    test = report.get("metrics", {}).get("test") or report["test"]
    ndcg = {m: test[m]["ndcg@10"] for m in MODELS if m in test}
    als_file = tables / "als.json"
    als = json.loads(als_file.read_text()) if als_file.is_file() else {"als": report["peers"]["als"]}
    bench_cmd = ["python -m bench.own_teacher", f"--data {args.data}", *(f"--set {s}" for s in args.set)]
    payload |= {
        "commands": {
            "bench": " ".join(bench_cmd + ([f"--als-fit {args.als_fit}"] if tag else [])),
            "import": f"recdistill teacher import tables:{tables / 'als.toml'} --config {ds.config}",
            "pipeline": " ".join([f"recdistill pipeline --config {ds.config}", *(f"--set {s}" for s in [*sets, source])]),
        },
        "als": als,
        "test": test,
        "ndcg@10": ndcg,
        "student_over_teacher": ndcg["student"] / ndcg["teacher"],
        "scratch_over_teacher": ndcg.get("scratch", float("nan")) / ndcg["teacher"],
        "agreement": report.get("agreement"),
        "parameters": report.get("parameters"),
        "teacher_source": report.get("teacher_source"),
        "seconds": report.get("seconds"),
        "version": version.name if version else None,
    }  # fmt: skip
    if version is not None:
        payload["served"] = served_anonymous(version, cfg)
    rows = [[m, f"{test[m]['ndcg@10']:.4f}", f"{test[m]['hr@10']:.4f}", f"{test[m]['recall@50']:.4f}",
             f"{test[m]['ndcg@10'] / ndcg['teacher']:.1%}"] for m in MODELS if m in test]  # fmt: skip
    chosen = als["als"]["chosen"]
    md = [
        f"# ALS as the teacher: {ds.name} (seed {args.seed}, one seed, protocol {cfg.eval.test_history})",
        "",
        f"`{payload['commands']['bench']}`",
        "",
        markdown_table(["model", "NDCG@10", "HR@10", "Recall@50", "of teacher NDCG"], rows),
        "",
        f"- teacher = the imported ALS tables (tuned {chosen}, fitted on {args.als_fit} interactions); "
        "`als` = the report's own ALS peer (same code, same seed, refitted on train + validation items "
        "for the test query)" + (": the two rows agree when the tables are that refit." if not tag else "."),
        "- student = history-MLP distilled from the tables (hard labels on train pairs + soft labels "
        "from the user's ALS vector); scratch = the same student without soft labels.",
        f"- student keeps {payload['student_over_teacher']:.1%} of the ALS teacher's NDCG@10 (target 95%).",
    ]
    if payload.get("gates", {}) and payload["gates"].get("status") == "failed":
        md.append("- the publish gate student_vs_scratch refused the version (exit 3); it was then published "
                  "with `recdistill export --set publish.require_gates=false` to serve it below.")  # fmt: skip
    if "served" in payload:
        sv = payload["served"]
        md.append(
            f"- anonymous sessions ({sv['sessions']} test histories, no user id): the published student graph "
            f"scores NDCG@10 {sv['student_onnx_anonymous']['ndcg@10']:.4f}; the ALS lookup teacher can score "
            f"{sv['teacher_can_score']} of them."
        )
    write_report(f"own_teacher_{ds.name}{tag}", payload, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
