"""Which ANN index at catalogue scale: `python -m bench.ann_index`, 1M items by default.

For item/user vectors of the student's shape it builds each index with training/export/ann.py's own
builder, walks the breadth ladder (HNSW efSearch, IVF nprobe) and reports, per index: build time,
index size, and for each breadth recall@10 against the exact top-10 and the search cost at batch 1
and batch 32 on one thread (as the service's worker runs it). The breadth reported is the
first whose recall on one set of 1,000 users reaches --min-recall (the exporter aims higher, at
export.ann_tune_recall, for headroom); its recall is then read on another 1,000 users.

Vectors: `--version-dir models/<version>` takes a published model's own: its student item vectors,
and user vectors from its student user graph over the last history_len items of 2,000 sampled
users' histories as the service holds them (seed_interactions: the whole log); `--vectors DIR`
reads DIR/items.npy float32 [n_items, dim] and DIR/users.npy float32 [>= 2,000, dim]; otherwise
two synthetic kinds:
  - clustered: what trained embeddings look like. Items are drawn from a mixture of --clusters
    Gaussian clusters of Zipf-like sizes, with a log-normal norm spread (popular items get long
    vectors under a softmax loss); users mix 1-3 cluster directions plus noise.
  - random: i.i.d. normal items and users, the worst case (nothing to exploit), as an untrained
    student's vectors are.
Indexes (all built by training/export/ann.py's builder): HNSW and IVF-Flat, each on raw inner products
(`-ip`) and over the MIPS -> L2 reduction (`-mips`); the exporter's defaults are hnsw-ip and
ivf-mips (training/export/ann.py DEFAULT_SPACE). Timings are wall-clock p50 and
process CPU time on this machine; CPU time is the figure a shared machine distorts least.
Results: bench/results/ann_index.json and .md. Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import RESULTS_DIR, markdown_table, write_report

log = logging.getLogger(__name__)

K = 10
N_QUERIES = 1000  # tuning users; as many other users give the reported recall
# spec -> (kind, space): each index on raw inner products and over the MIPS -> L2 reduction
INDEXES = {
    "hnsw-ip": ("hnsw", "inner_product"),
    "hnsw-mips": ("hnsw", "mips_to_l2"),
    "ivf-ip": ("ivf", "inner_product"),
    "ivf-mips": ("ivf", "mips_to_l2"),
}


def clustered_vectors(
    n_items: int, dim: int, n_users: int, n_clusters: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(items, users) float32, shaped like a trained two-tower model's vectors (see the docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    sizes /= sizes.sum()
    directions = centres[rng.choice(n_clusters, n_items, p=sizes)]
    directions += 0.35 * rng.normal(size=(n_items, dim)) / np.sqrt(dim)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    items = directions * rng.lognormal(0.0, 0.35, n_items)[:, None]
    liked = centres[rng.choice(n_clusters, (n_users, 3), p=sizes)]  # (u, 3, dim)
    weights = rng.dirichlet([1.0, 0.5, 0.3], n_users)
    users = np.einsum("uk,ukd->ud", weights, liked) + 0.3 * rng.normal(size=(n_users, dim)) / np.sqrt(dim)
    users *= rng.lognormal(1.0, 0.3, n_users)[:, None]
    return items.astype(np.float32), users.astype(np.float32)


def random_vectors(n_items: int, dim: int, n_users: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n_items, dim)).astype(np.float32),
        rng.normal(size=(n_users, dim)).astype(np.float32),
    )


def load_vectors(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(items, users) from `folder`/items.npy and users.npy; ValueError naming what is wrong."""
    items = np.load(folder / "items.npy", allow_pickle=False).astype(np.float32)
    users = np.load(folder / "users.npy", allow_pickle=False).astype(np.float32)
    if items.ndim != 2 or users.ndim != 2 or items.shape[1] != users.shape[1]:
        raise ValueError(f"{folder}: items {items.shape} and users {users.shape} must be [n, dim] alike")
    if len(users) < 2 * N_QUERIES:
        raise ValueError(f"{folder}/users.npy: {len(users)} rows, need {2 * N_QUERIES}")
    return items, users


def version_vectors(version_dir: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(items, users) of a published version: its student's item matrix, and its student's user
    vectors for the stored histories of 2 * N_QUERIES sampled users (onnxruntime, as served)."""
    import onnxruntime as ort

    from core.manifest import HISTORY_INPUT, USER_VECTOR_OUTPUT, load_manifest

    manifest = load_manifest(version_dir)
    card = manifest.student
    items = np.load(version_dir / card.item_vectors, allow_pickle=False).astype(np.float32)
    if manifest.seed_interactions is None:
        raise ValueError(f"{version_dir}: the manifest names no seed_interactions to take histories from")
    with np.load(version_dir / manifest.seed_interactions, allow_pickle=False) as log:
        user, item, ts = log["user"], log["item"], log["timestamp"]
    order = np.lexsort((ts, user))  # by user, then time (stable: ties keep file order)
    user, item = user[order], item[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    if len(starts) < 2 * N_QUERIES:
        raise ValueError(f"{version_dir}: {len(starts)} users with history, need {2 * N_QUERIES}")
    chosen = np.random.default_rng(seed).choice(len(starts), 2 * N_QUERIES, replace=False)
    rows = np.full((len(chosen), card.history_len), card.padding_value, np.int64)
    for r, u in enumerate(chosen):
        tail = item[max(starts[u], ends[u] - card.history_len) : ends[u]]
        rows[r, card.history_len - len(tail) :] = tail
    sess = ort.InferenceSession(str(version_dir / card.user.file), providers=["CPUExecutionProvider"])
    users = sess.run([USER_VECTOR_OUTPUT], {HISTORY_INPUT: rows})[0]
    return items, users.astype(np.float32)


def _build(items: np.ndarray, spec: str, args: argparse.Namespace) -> tuple[Any, str]:
    """(index, kind) built by training/export/ann.py's builder in the spec's space."""
    from training.export.ann import build_index

    kind, space = INDEXES[spec]
    index = build_index(
        items,
        kind,  # type: ignore[arg-type]
        space=space,  # type: ignore[arg-type]
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        threads=args.build_threads,
        seed=args.seed,
    )
    return index, kind


def _search(index: Any, kind: str, queries: np.ndarray, k: int) -> np.ndarray:
    from training.export.ann import search_labels

    return search_labels(index, kind, queries, k)  # type: ignore[arg-type]


def _set_breadth(index: Any, kind: str, value: int) -> None:
    from training.export.ann import set_breadth

    set_breadth(index, kind, value)  # type: ignore[arg-type]


def _cost(index: Any, kind: str, queries: np.ndarray, batch: int, n_queries: int) -> dict[str, float]:
    """Wall p50 and CPU mean, in ms per query, searching `batch` queries per call on one thread."""
    walls, cpu_start = [], time.process_time()
    calls = max(1, n_queries // batch)
    for c in range(calls):
        block = queries[(c * batch) % len(queries) :][:batch]
        start = time.perf_counter()
        _search(index, kind, block, 2 * K)  # the service over-fetches k + |seen items|
        walls.append((time.perf_counter() - start) / len(block))
    return {
        "p50_ms": 1000.0 * float(np.median(walls)),
        "cpu_ms": 1000.0 * (time.process_time() - cpu_start) / (calls * batch),
    }


def measure(
    items: np.ndarray, users: np.ndarray, spec: str, ladder: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    """Build one index and walk its ladder until the tuning recall passes --stop-recall."""
    import faiss

    from core.topk import exact_topk, recall_at_k

    tune, held = users[:N_QUERIES], users[N_QUERIES : 2 * N_QUERIES]
    _, exact_tune = exact_topk(tune, items, K)
    _, exact_held = exact_topk(held, items, K)
    start, cpu = time.perf_counter(), time.process_time()
    index, kind = _build(items, spec, args)
    out: dict[str, Any] = {
        "index": spec,
        "build_seconds": time.perf_counter() - start,
        "build_cpu_seconds": time.process_time() - cpu,
        "index_mb": faiss.serialize_index(index).nbytes / 2**20,
        "nlist": int(index.nlist) if hasattr(index, "nlist") else None,
        "ladder": [],
        "chosen": None,
    }
    faiss.omp_set_num_threads(1)  # the service searches on one thread
    for value in ladder:
        if kind == "hnsw" and value < K:
            continue
        _set_breadth(index, kind, value)
        row = {
            "breadth": value,
            "tune_recall": recall_at_k(_search(index, kind, tune, K), exact_tune),
            "recall": recall_at_k(_search(index, kind, held, K), exact_held),
            "batch1": _cost(index, kind, held, 1, args.latency_queries),
            f"batch{args.batch}": _cost(index, kind, held, args.batch, args.latency_queries),
        }
        out["ladder"].append(row)
        log.info("%s breadth %d: %s", spec, value, row)
        if out["chosen"] is None and row["tune_recall"] >= args.min_recall:
            out["chosen"] = row
        if row["tune_recall"] >= args.stop_recall or (out["nlist"] and value >= out["nlist"]):
            break
    return out


def markdown(payload: dict[str, Any]) -> str:
    a = payload["args"]
    b = f"batch{a['batch']}"
    lines = [
        "# ANN index choice",
        "",
        f"Command: `{payload['command']}`. Machine: {payload['machine']}. Breadth: the first on the "
        f"ladder whose recall@{K} on {N_QUERIES} tuning users reaches {a['min_recall']} (the exporter "
        f"aims higher, export.ann_tune_recall); recall below is on {N_QUERIES} other users. Costs on "
        f"one thread, per query, fetching {2 * K}; every rung is in the JSON.",
        "",
    ]
    rows = []
    for r in payload["runs"]:
        c = r["chosen"]
        best = r["ladder"][-1] if r["ladder"] else None
        rows.append(
            [
                r["data"],
                f"{r['n_items']:,}",
                r["dim"],
                r["index"],
                f"{r['build_seconds']:.0f}",
                f"{r['index_mb']:.0f}",
                c["breadth"]
                if c
                else f"none (best {best['recall']:.3f} at {best['breadth']})"
                if best
                else "-",
                f"{c['recall']:.4f}" if c else "-",
                f"{c['batch1']['p50_ms']:.3f}" if c else "-",
                f"{c['batch1']['cpu_ms']:.3f}" if c else "-",
                f"{c[b]['cpu_ms']:.3f}" if c else "-",
            ]
        )
    lines.append(
        markdown_table(
            [
                "vectors",
                "items",
                "dim",
                "index",
                "build s",
                "index MB",
                "breadth",
                f"recall@{K}",
                "b1 p50 ms",
                "b1 CPU ms",
                f"b{a['batch']} CPU ms/q",
            ],
            rows,
        )
    )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from training.export.ann import SEARCH_LADDER

    parser = argparse.ArgumentParser(prog="python -m bench.ann_index", description=__doc__.splitlines()[0])
    parser.add_argument("--version-dir", type=Path, default=None, help="a published version's vectors")
    parser.add_argument("--vectors", type=Path, default=None, help="DIR with items.npy and users.npy")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dims", default="16,32", help="comma-separated vector dims")
    parser.add_argument(
        "--data", default=None, help="clustered and/or random (default both, none with published vectors)"
    )
    parser.add_argument("--indexes", default=",".join(INDEXES), help=", ".join(INDEXES))
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--min-recall", type=float, default=0.95)
    parser.add_argument("--stop-recall", type=float, default=0.97, help="stop the ladder past this")
    parser.add_argument("--ladder", default=",".join(map(str, SEARCH_LADDER)))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--latency-queries", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.dim_list = [int(x) for x in args.dims.split(",")]
    given = args.version_dir is not None or args.vectors is not None
    args.data_list = [] if args.data is None and given else (args.data or "clustered,random").split(",")
    args.index_list = args.indexes.split(",")
    args.ladder_list = [int(x) for x in args.ladder.split(",")]
    if set(args.data_list) - {"clustered", "random"} or set(args.index_list) - set(INDEXES):
        parser.error(f"--data takes clustered,random; --indexes takes {','.join(INDEXES)}")
    if args.version_dir is not None and args.vectors is not None:
        parser.error("--version-dir and --vectors each give the vectors: pass one")
    if args.items < 2 * N_QUERIES:
        parser.error(f"--items must be at least {2 * N_QUERIES}")
    return args


def main(argv: list[str] | None = None) -> int:
    from bench.harness import machine_info

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = "python -m bench.ann_index " + " ".join(sys.argv[1:] if argv is None else argv)
    m = machine_info()
    runs = []
    given = args.version_dir or args.vectors
    if given is not None:
        items, users = (
            version_vectors(args.version_dir, args.seed) if args.version_dir else load_vectors(args.vectors)
        )
        for spec in args.index_list:
            run = measure(items, users, spec, args.ladder_list, args)
            runs.append({"data": given.name, "n_items": len(items), "dim": items.shape[1], **run})
    for data in args.data_list:
        for dim in args.dim_list:
            make = clustered_vectors if data == "clustered" else random_vectors
            kwargs = {"n_clusters": args.clusters} if data == "clustered" else {}
            items, users = make(args.items, dim, 2 * N_QUERIES, seed=args.seed, **kwargs)  # type: ignore[operator]
            for spec in args.index_list:
                run = measure(items, users, spec, args.ladder_list, args)
                runs.append({"data": data, "n_items": len(items), "dim": dim, **run})
    payload = {
        "command": command.strip(),
        "machine": f"{m.get('cpu_model', '?')}, {m.get('nproc', '?')} cores",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "runs": runs,
    }
    json_path, md_path = write_report("ann_index", payload, markdown(payload), args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
