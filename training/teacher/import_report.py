"""What `recdistill teacher import` prints: one screen that says what was checked and what it found.

A user reads it before spending the training budget, so it answers the questions the import's checks
answer, each on its line: the query's inputs (the history length and the pad index it was probed
with), how much of the log the id maps cover, the shapes the query graph ran at, the sample's NDCG@k
beside popularity's, and the files the manifest will name. The digest is the one the soft-label
cache and the manifest key on. A teacher not clearly above popularity still imports (the user may
know why), but the verdict says so at the top and the warning closes the screen.
"""

from __future__ import annotations

from training.teacher.imported import Imported
from training.teacher.sample_check import quality_line, quality_warning


def _query_line(report: dict) -> str:
    inputs = ["user index"] if report["takes_user_id"] else []
    if report["takes_history"]:
        pad = report.get("padding_value")
        padded = f", left-padded with {pad} (no row)" if pad is not None else ""
        inputs.append(f"history of 1 … {report['history_len']} items{padded}")
    query = " + ".join(inputs) if report["takes_history"] else "no history (a lookup by user id)"
    return f"query: {query}; dim {report['dim']}; {report['n_items']} items; scores are dot products"


def _shapes_line(report: dict) -> str:
    exported = "export_check" in report
    shapes = report["export_check"] if exported else report["shapes"]
    line = (
        f"{'ONNX export' if exported else 'query graph'}: runs at history lengths "
        f"{shapes['history_lengths']}, batch sizes {' and '.join(map(str, shapes['batch_sizes']))}"
    )
    if exported:
        line += f"; max |user vector diff| {shapes['max_abs_user_vector_diff']:.3g}"
    return line


def import_report(imported: Imported) -> list[str]:
    """The import's screen, line by line; the last lines are the warning when there is one."""
    source, report = imported.source, imported.source.report
    warning = quality_warning(report["sample"])
    verdict = "imported, but see the WARNING below" if warning else "ok"
    lines = [
        f"teacher {source.source}: {verdict}; sha256 {source.sha256} ({imported.seconds:.1f} s)",
        f"  {_query_line(report)}",
    ]
    for what in ("items", "users"):
        if what in report:
            r = report[what]
            lines.append(
                f"  {what}: {r['ids'] - r['unmapped_ids']} of {r['ids']} mapped, "
                f"{r['unmapped_interaction_share']:.2%} of the interactions unmapped"
            )
    if "unknown_users" in report:
        lines.append(f"  unknown to the teacher (no vector): {report['unknown_users']} users")
    lines += [
        f"  {_shapes_line(report)}",
        f"  {quality_line(report['sample'])}",
        f"  files: {', '.join(source.files) or 'none named'}",
    ]
    return [*lines, "", warning] if warning else lines
