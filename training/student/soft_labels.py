"""Soft labels: the teacher's scores the student learns from, a cached, resumable step.

Soft labels: for every (history -> next item) pair of the train split, the teacher's logits over a
candidate set = the teacher's top-M items (in rank order) plus `n_sampled` items drawn by
popularity. They are computed in chunks, each written atomically under
`cache_dir/<teacher_key[:16]>-<settings hash>/`, so a second call loads instead of recomputing and
an interrupted run resumes at the first missing chunk. At catalog scale the top-M come from a faiss
IVF shortlist over the teacher's item vectors (training/student/shortlist.py), its recall measured and kept.

Besides the labelled pairs, the soft labels also cover each user's *whole* train history, the very
input the service scores, which has no hard label (the student's fit, training/student/distill.py,
adds those rows with `distill.final_history_repeats`).

Soft labels of a pair come from the teacher's causal pass over the window the pair sits in (the
same windows the teacher trained on), so a pair early in a window sees up to L items less context
than the student does; the whole-history rows are scored exactly as served. An imported teacher
(training/teacher/imported.py) has no causal pass: each pair's history is queried as served. A lookup
teacher (embedding tables) gives every pair of a user the same vector: its soft labels say what the
teacher thinks of the user as a whole (fitted on interactions after the pair too), which is what
the student is asked to recover from the history so far.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from core.files import open_atomic
from training import distributed
from training.config import PipelineConfig
from training.data.split import training_split
from training.data.types import Split
from training.distributed import set_threads
from training.fit.examples import Pairs, build_pairs, histories_before, trim_padding, window_tensors
from training.fit.softmax import negative_proposal
from training.student.shortlist import RECALL_QUERIES, IvfShortlist, use_ivf
from training.teacher.ensemble import TeacherPlusStudent
from training.teacher.imported import teacher_source
from training.teacher.protocol import Teacher, teacher_device
from training.teacher.two_tower import TwoTowerTeacher

log = logging.getLogger(__name__)

CHUNK_PAIRS = 8192  # pairs per cache chunk: the unit of resumption
SCORE_BLOCK_FLOATS = 1 << 25  # at most 128 MB of (rows, n_items) teacher scores at once
SHORTLIST_FILE = "shortlist.json"
QUERY_BLOCK = 512  # served-style queries per forward pass, sorted by length (see _final_vectors)


@dataclass(frozen=True)
class SoftLabels:
    """Teacher logits over a candidate set for every train pair, then for every user's full history.

    Rows [0, n_pairs) are the train pairs in `build_pairs` order (their history is the items before
    `pos`); rows [n_pairs, len) are one per user with train items, pos = the end of their train
    history: the input the service sees, which has no hard label, only the teacher's.
    """

    teacher_key: str
    user: np.ndarray  # int64 [R]
    pos: np.ndarray  # int64 [R]: the history is split.train_items[user's start : pos]
    candidates: np.ndarray  # int32 [R, M + S]: teacher's top-M (best first), then sampled items
    logits: np.ndarray  # float32 [R, M + S]: the teacher's scores of those candidates
    top_m: int
    n_pairs: int
    shortlist: dict | None = None  # IVF shortlist recall vs exact top-M (None: exact scoring)
    # bool [R]: rows whose user the teacher knows (a lookup teacher); an unknown user's row keeps its
    # hard label only: the teacher has no opinion of that user, and a zero vector is not one. None: all.
    known: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user)


def soft_label_dir(cfg: PipelineConfig, split: Split, cache_dir: Path, teacher_key: str) -> Path:
    """One folder per (teacher, candidate settings, train data): anything else changing recomputes."""
    d = cfg.distill
    settings = {
        "top_m": d.top_m,
        "n_sampled": d.n_sampled,
        "seed": cfg.seed,
        "history_len": cfg.teacher.history_len,
        "chunk": CHUNK_PAIRS,
        "train": hashlib.sha256(split.train_items.tobytes() + split.train_indptr.tobytes()).hexdigest(),
    }
    if use_ivf(d, split.n_items):  # approximate top-M: its settings are part of what was computed
        settings["shortlist"] = {"nlist": d.shortlist_nlist, "nprobe": d.shortlist_nprobe}
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{teacher_key[:16]}-{tag}"


def _chunk_path(folder: Path, lo: int) -> Path:
    """The cache file of the chunk that starts at pair `lo`."""
    return folder / f"chunk_{lo // CHUNK_PAIRS:06d}.npz"


def _teacher_chunk(
    teacher: Teacher, tensors: tuple[torch.Tensor, ...], pairs: Pairs, lo: int, hi: int,
    items: torch.Tensor, top_m: int, n_sampled: int, proposal: torch.Tensor, seed: int,
    shortlist: IvfShortlist | None, split: Split,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Candidates and logits for pairs [lo, hi): one causal pass over the windows they live in (our
    teacher), or one query per pair from its history, as served (an imported teacher)."""
    if not isinstance(teacher, TwoTowerTeacher):
        vec = _final_vectors(teacher, split, pairs.user[lo:hi], pairs.pos[lo:hi])
        return _candidates(vec, items, top_m, n_sampled, proposal, seed * 1_000_003 + lo, shortlist)
    users, inputs, _ = tensors
    win = pairs.window[lo:hi]
    uniq, inv = np.unique(win, return_inverse=True)
    w = torch.from_numpy(uniq)
    vec = teacher.sequence_vectors(users[w], inputs[w])[
        torch.from_numpy(inv), torch.from_numpy(pairs.col[lo:hi])
    ]
    return _candidates(vec, items, top_m, n_sampled, proposal, seed * 1_000_003 + lo, shortlist)


def _candidates(
    vec: torch.Tensor, items: torch.Tensor, top_m: int, n_sampled: int, proposal: torch.Tensor, seed: int,
    shortlist: IvfShortlist | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The teacher's top-M (best first) plus `n_sampled` popularity-sampled items, with their scores.

    Exact: scores (vec @ itemsᵀ) are formed SCORE_BLOCK_FLOATS at a time (a chunk of 8,192 pairs
    against a 1M-item catalog would otherwise ask for a 32 GB (B, N) matrix). With a shortlist the
    top-M come from its IVF index and the sampled items are scored one by one.
    """
    rows, n_items = len(vec), items.shape[0]
    m = min(top_m, n_items)
    gen = torch.Generator().manual_seed(seed)  # fixed per chunk: a resumed run reproduces it exactly
    sampled = torch.multinomial(proposal, rows * n_sampled, replacement=True, generator=gen)
    sampled = sampled.view(rows, n_sampled)
    width = n_items if shortlist is None else n_sampled * items.shape[1]
    block = max(1, SCORE_BLOCK_FLOATS // max(width, 1))
    cands, logits = [], []
    for lo in range(0, rows, block):
        picked = sampled[lo : lo + block]
        if shortlist is None:
            scores = (vec[lo : lo + block] @ items.T).cpu()  # (b, N)
            top_logits, top = scores.topk(m, dim=1)
            picked_logits = scores.gather(1, picked)
        else:
            found_s, found_i = shortlist.top(vec[lo : lo + block].cpu().numpy(), m)
            top_logits, top = torch.from_numpy(found_s), torch.from_numpy(found_i)
            picked_logits = torch.einsum("bd,bsd->bs", vec[lo : lo + block], items[picked]).cpu()
        cands.append(torch.cat([top, picked], dim=1))
        logits.append(torch.cat([top_logits, picked_logits], dim=1))
    cand = torch.cat(cands) if cands else torch.zeros((0, min(top_m, n_items) + n_sampled), dtype=torch.int64)
    logit = torch.cat(logits) if logits else torch.zeros(cand.shape)
    return cand.to(torch.int32).numpy(), logit.to(torch.float32).numpy()


def _final_vectors(teacher: Teacher, split: Split, user: np.ndarray, pos: np.ndarray) -> torch.Tensor:
    """The teacher's query vectors of these users' histories ending before `pos` (as served), in the
    order given.

    Every pair of an imported teacher or of the teacher+scratch ensemble comes through here, one query
    per pair. On shop logs most histories are short (Beauty: ~9 train items per user, history_len 50),
    so when the model ignores left padding the queries are sorted by length, run QUERY_BLOCK at a
    time and cut to their block's longest history: the same vectors for a fraction of the
    transformer's (quadratic) work. An imported teacher is a black box: it gets the full width, as
    served. The soft-label stage of the shop preset (teacher+scratch) on Beauty's day-1 log: 98-133 s
    before, 34-35 s after (the `seconds:` line each run logs; docs/retraining.md, one core each).
    """
    device = teacher_device(teacher)
    cut = _ignores_left_padding(teacher)
    width = teacher.history_len
    if cut:
        order = np.argsort(np.minimum(pos - split.train_indptr[user], width), kind="stable")
        block = QUERY_BLOCK
    else:
        order, block = np.arange(len(user)), max(len(user), 1)
    parts = []
    for lo in range(0, len(user), block):
        rows = order[lo : lo + block]
        hist = torch.from_numpy(histories_before(split, user[rows], pos[rows], width)).to(device)
        if cut:
            hist = trim_padding(hist, teacher.padding_value)
        users = torch.from_numpy(user[rows]).to(device) if teacher.takes_user_id else None
        parts.append(teacher.query_vectors(users, hist).to(device))
    if not parts:
        return torch.zeros((0, teacher.dim), device=device)
    vec = torch.empty((len(user), parts[0].shape[1]), dtype=parts[0].dtype, device=device)
    vec[torch.from_numpy(order).to(device)] = torch.cat(parts)
    return vec


def _ignores_left_padding(teacher: Teacher) -> bool:
    """Whether extra left padding provably leaves this teacher's query unchanged (positions count from
    the right in our teacher and student); an imported teacher may read the padding, so it may not."""
    inner = teacher.teacher if isinstance(teacher, TeacherPlusStudent) else teacher
    return isinstance(inner, TwoTowerTeacher)


def _final_rows(
    teacher: Teacher, split: Split, items: torch.Tensor, top_m: int, n_sampled: int,
    proposal: torch.Tensor, seed: int, shortlist: IvfShortlist | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(user, pos, candidates, logits) for every user's whole train history, scored exactly as served."""
    lengths = np.diff(split.train_indptr)
    user = np.flatnonzero(lengths > 0).astype(np.int64)
    pos = split.train_indptr[user + 1]
    cands, logits = [], []
    for lo in range(0, len(user), 1024):
        u, p = user[lo : lo + 1024], pos[lo : lo + 1024]
        vec = _final_vectors(teacher, split, u, p)
        c, lg = _candidates(vec, items, top_m, n_sampled, proposal, seed * 1_000_003 - 1 - lo, shortlist)
        cands.append(c)
        logits.append(lg)
    width = min(top_m, split.n_items) + n_sampled
    if not cands:
        return user, pos, np.zeros((0, width), np.int32), np.zeros((0, width), np.float32)
    return user, pos, np.concatenate(cands), np.concatenate(logits)


def build_soft_labels(
    teacher: Teacher,
    split: Split,
    cfg: PipelineConfig,
    cache_dir: Path,
    teacher_key: str,
    progress: bool = True,
    share: tuple[int, int] | None = None,
) -> SoftLabels | None:
    """Teacher logits over candidate sets for every train pair; cached by teacher_key and resumable.

    `share` (i, n): only compute and cache the missing chunks i, i + n, i + 2n, ... and return None,
    so n processes can split the work (training/schedule/side.py); a later call without it reads them back.
    Every chunk is seeded by its position, so who computed it does not change it.
    """
    set_threads(cfg)
    d = cfg.distill
    folder = soft_label_dir(cfg, split, cache_dir, teacher_key)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = build_pairs(split, teacher.history_len)
    # the causal windows only our own teacher reads (an imported one is queried pair by pair)
    tensors = (
        window_tensors(split, pairs, teacher.history_len) if isinstance(teacher, TwoTowerTeacher) else ()
    )
    proposal = negative_proposal(split)
    teacher.eval()
    cands, logits, computed = [], [], 0
    starts = range(0, len(pairs.user), CHUNK_PAIRS)
    with torch.no_grad():
        items = teacher.item_vectors()
        lazy: dict[str, IvfShortlist | None] = {}

        def shortlist() -> IvfShortlist | None:
            """The IVF shortlist (large catalogs), built on first use: a fully cached run never builds it."""
            if "index" not in lazy:
                lazy["index"] = _build_shortlist(teacher, split, items, cfg, folder)
            return lazy["index"]

        def compute_chunk(lo: int) -> tuple[np.ndarray, np.ndarray]:
            """Score pairs [lo, lo + CHUNK_PAIRS) and write the chunk atomically: a crash leaves no half file."""
            hi = min(lo + CHUNK_PAIRS, len(pairs.user))
            c, lg = _teacher_chunk(
                teacher, tensors, pairs, lo, hi, items, d.top_m, d.n_sampled, proposal, cfg.seed, shortlist(),
                split,
            )  # fmt: skip
            with open_atomic(_chunk_path(folder, lo), "wb") as fh:
                np.savez(fh, candidates=c, logits=lg)
            return c, lg

        if share is not None:
            for lo in list(starts)[share[0] :: share[1]]:
                if not _chunk_path(folder, lo).is_file():
                    compute_chunk(lo)
            return None
        if distributed.world_size() > 1:  # torchrun: each rank computes a strided share of the missing chunks
            for lo in map(int, distributed.current().shard(list(starts))):
                if not _chunk_path(folder, lo).is_file():
                    compute_chunk(lo)
            distributed.barrier()  # every chunk is on disk (one node, one filesystem): the loop reads them all
        for lo in tqdm(starts, desc="soft labels", disable=not progress, leave=False):
            path = _chunk_path(folder, lo)
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    c, lg = z["candidates"], z["logits"]
            else:
                c, lg = compute_chunk(lo)
                computed += 1
            cands.append(c)
            logits.append(lg)
        final = folder / "final.npz"
        if final.is_file():
            with np.load(final, allow_pickle=False) as z:
                f_user, f_pos, f_cand, f_logits = z["user"], z["pos"], z["candidates"], z["logits"]
        else:
            f_user, f_pos, f_cand, f_logits = _final_rows(
                teacher, split, items, d.top_m, d.n_sampled, proposal, cfg.seed, shortlist()
            )
            with open_atomic(final, "wb") as fh:  # torchrun: each rank may write it; the last rename wins
                np.savez(fh, user=f_user, pos=f_pos, candidates=f_cand, logits=f_logits)
            computed += 1
    log.info(
        "soft labels: %d chunks, %d computed, %d from cache %s",
        len(starts) + 1,
        computed,
        len(starts) + 1 - computed,
        folder,
    )
    return SoftLabels(
        teacher_key=teacher_key,
        user=np.concatenate([pairs.user, f_user]),
        pos=np.concatenate([pairs.pos, f_pos]),
        candidates=np.concatenate([*cands, f_cand]),
        logits=np.concatenate([*logits, f_logits]),
        top_m=min(d.top_m, split.n_items),
        n_pairs=len(pairs.user),
        shortlist=_read_json(folder / SHORTLIST_FILE),
        known=None
        if teacher.known_users is None
        else np.asarray(teacher.known_users)[np.concatenate([pairs.user, f_user])],
    )


def _build_shortlist(
    teacher: Teacher, split: Split, items: torch.Tensor, cfg: PipelineConfig, folder: Path
) -> IvfShortlist | None:
    """None (exact scoring) for small catalogs; else an IVF index whose recall of the exact top-M is
    measured on a seeded sample of served histories and written beside the chunks it produces."""
    if not use_ivf(cfg.distill, split.n_items):
        return None
    index = IvfShortlist.build(items.cpu().numpy(), cfg.distill, cfg.seed, cfg.threads)
    users = np.flatnonzero(np.diff(split.train_indptr) > 0)
    rng = np.random.default_rng(cfg.seed)
    users = np.sort(rng.choice(users, min(RECALL_QUERIES, len(users)), replace=False)).astype(np.int64)
    if len(users):
        vec = _final_vectors(teacher, split, users, split.train_indptr[users + 1]).cpu().numpy()
        recall = index.measure_recall(vec, min(cfg.distill.top_m, split.n_items))
        with open_atomic(folder / SHORTLIST_FILE, "w") as fh:
            json.dump(recall, fh, indent=2)
    return index


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def cached_shortlist(cfg: PipelineConfig, split: Split, teacher: Teacher) -> dict | None:
    """The soft-label shortlist's measured recall for this teacher (None: exact scoring)."""
    key = teacher_source(cfg, teacher).sha256
    if not key:
        return None
    folder = soft_label_dir(cfg, training_split(cfg, split), Path(cfg.work_dir) / "soft_labels", key)
    path = folder / SHORTLIST_FILE
    return json.loads(path.read_text()) if path.is_file() else None
