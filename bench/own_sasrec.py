"""A teacher written without training/ (tests/fixtures/own_teacher.py, a compact SASRec trained on the
tiny shop's train split in its own id order), imported as a PyTorch module and as ONNX: soft labels
and distilled students side by side, over a few student seeds (the seed noise to judge by).

    python -m bench.own_sasrec [--seeds 0 1 2]

Writes bench/results/own_teacher_sasrec.{json,md}. tests/training/teacher/test_teacher_import.py asserts
the same on one seed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import markdown_table, write_report


def main(argv: list[str] | None = None) -> int:
    from tests.fixtures import own_teacher
    from tests.fixtures.imported_teacher import tiny_cfg
    from training.evaluate.ranking import evaluate
    from training.evaluate.scoring import student_score_fn, teacher_score_fn
    from training.pipeline import load_data
    from training.student.distill import fit_student
    from training.student.soft_labels import build_soft_labels
    from training.teacher.imported import import_teacher

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # the legacy ONNX exporter's deprecation and tracer warnings
    tmp = Path(tempfile.mkdtemp(prefix="own_sasrec"))
    data, split = load_data(tiny_cfg(tmp))
    model = own_teacher.train_sasrec(
        data.user_ids[split.train_users], data.catalog.item_ids[split.train_items]
    )
    own_teacher.save(model, tmp / "sasrec.pt")
    spec = own_teacher.export_onnx(model, tmp / "onnx")
    forms = {
        "python": ["teacher.source=python:tests.fixtures.own_teacher:load",
                   f"teacher.factory_args={{path = '{tmp / 'sasrec.pt'}'}}"],
        "onnx": [f"teacher.source=onnx:{spec}"],
    }  # fmt: skip
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        labels = {}
        for form, sets in forms.items():
            cfg = tiny_cfg(tmp / f"{form}{seed}", *sets, f"seed={seed}")
            imported = import_teacher(cfg, data)
            t = imported.teacher
            labels[form] = build_soft_labels(
                t, split, cfg, cfg.work_dir / "sl", imported.source.sha256, progress=False
            )
            teacher = evaluate(teacher_score_fn(t), split, "test", t.history_len)
            fit = fit_student(split, cfg, labels[form], cfg.work_dir, progress=False)
            student = evaluate(student_score_fn(fit.model), split, "test", cfg.student.history_len)
            rows.append({"seed": seed, "form": form, "teacher": teacher, "student": student})
        a, b = labels["python"], labels["onnx"]
        rows[-1]["soft_labels_vs_python"] = {
            "max_abs_logit_diff": float(np.abs(a.logits - b.logits).max()),
            "rows_with_same_candidates": float((a.candidates == b.candidates).all(axis=1).mean()),
            "rows": len(a),
        }
    table = [[r["seed"], r["form"], f"{r['teacher']['ndcg@10']:.4f}", f"{r['student']['ndcg@10']:.4f}",
              f"{r['soft_labels_vs_python']['max_abs_logit_diff']:.2g}" if "soft_labels_vs_python" in r else "-"]
             for r in rows]  # fmt: skip
    students = {f: [r["student"]["ndcg@10"] for r in rows if r["form"] == f] for f in forms}
    md = [
        "# Own SASRec teacher imported twice: python: vs onnx: (tiny synthetic shop, test protocol train+valid)",
        "",
        "`python -m bench.own_sasrec --seeds " + " ".join(map(str, args.seeds)) + "`",
        "",
        markdown_table(["student seed", "import", "teacher NDCG@10", "student NDCG@10", "max |logit diff| vs python"], table),
        "",
        f"- student NDCG@10 over seeds: python {np.mean(students['python']):.4f} ± {np.std(students['python'], ddof=1) if len(args.seeds) > 1 else 0:.4f}, "
        f"onnx {np.mean(students['onnx']):.4f}; largest same-seed difference "
        f"{max(abs(p - o) for p, o in zip(students['python'], students['onnx'], strict=True)):.4f}",
    ]  # fmt: skip
    write_report("own_teacher_sasrec", {"benchmark": "own_teacher_sasrec", "rows": rows}, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
