"""The two-tower teacher: (user id +) recent history on one side, item id + category + attributes +
price on the other.

The towers return embeddings only; the losses live in training/fit/losses.py and the fit in
training/teacher/fit.py. Scores are exactly `user_vectors(user, history) @ item_vectors().T`: with
`score = "cosine"` both sides are L2-normalised and the temperature is folded into the user side;
with `score = "dot"` they are plain inner products. Either way the logits used for ranking, for the
soft labels and in the exported graph are one and the same.

Item attributes (brand, category path, tags: several per item) are a padded [n_items, A] table of
attribute indices; an item's attribute embedding is the mean of its tags' rows. On sparse shop logs
(11-16 interactions per item) the tags let rarely bought items borrow from their brand and category.

The history encoder is a small causal transformer (SASRec-style, Kang & McAuley ICDM 2018) over the
last `history_len` items, left-padded with `n_items`. Positions are counted from the right (the most
recent item is position 0), so extra left padding never changes the output, and the graph has no
data-dependent Python control flow (export-friendly with dynamic batch and history length).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.config import TeacherConfig

NEG_INF = -1e9  # additive mask value: finite so a fully padded row never produces NaN


class CausalBlock(nn.Module):
    """Pre-norm transformer block with causal attention that ignores padded keys."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"teacher.dim ({dim}) must be divisible by teacher.n_heads ({n_heads})")
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # x: (B, L, D); bias: (B, 1, L, L) additive attention mask
        B, L, D = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q = q.view(B, L, h, D // h).transpose(1, 2)  # (B, h, L, Dh)
        k = k.view(B, L, h, D // h).transpose(1, 2)
        v = v.view(B, L, h, D // h).transpose(1, 2)
        att = q @ k.transpose(-1, -2) / math.sqrt(D // h) + bias  # (B, h, L, L)
        att = self.drop(torch.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(B, L, D)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ffn(self.ln2(x)))


def price_features(price: np.ndarray) -> np.ndarray:
    """float32 [N, 2]: standardised log1p(price) (0 when unknown) and an unknown-price flag."""
    price = np.asarray(price, dtype=np.float64)
    known = np.isfinite(price) & (price >= 0)
    logp = np.where(known, np.log1p(np.where(known, price, 0.0)), 0.0)
    if known.any():
        mu, sd = logp[known].mean(), logp[known].std() or 1.0
        logp = np.where(known, (logp - mu) / sd, 0.0)
    return np.stack([logp, (~known).astype(np.float64)], axis=1).astype(np.float32)


def attribute_table(indptr: np.ndarray, index: np.ndarray, n_attributes: int) -> np.ndarray:
    """int64 [n_items, A]: each item's attribute indices (CSR rows), right-padded with n_attributes.

    A = the most tags any item has (at least 1, so an item table with no attributes is [n, 1] of pads).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    counts = np.diff(indptr)
    width = max(1, int(counts.max(initial=0)))
    out = np.full((len(counts), width), n_attributes, dtype=np.int64)
    rows = np.repeat(np.arange(len(counts)), counts)
    cols = np.arange(len(rows)) - indptr[rows]
    out[rows, cols] = np.asarray(index, dtype=np.int64)
    return out


class TwoTowerTeacher(nn.Module):
    def __init__(
        self,
        n_users: int,
        item_category: np.ndarray,
        item_price: np.ndarray,
        cfg: TeacherConfig,
        item_attributes: np.ndarray | None = None,
        n_attributes: int = 0,
    ):
        """item_attributes: int64 [n_items, A] from `attribute_table`, padded with n_attributes."""
        super().__init__()
        item_category = np.asarray(item_category, dtype=np.int64)
        n_items = len(item_category)
        if len(item_price) != n_items:
            raise ValueError(f"item_price has {len(item_price)} rows, item_category {n_items}")
        if item_attributes is None:
            item_attributes = np.full((n_items, 1), n_attributes, dtype=np.int64)  # all pads
        item_attributes = np.asarray(item_attributes, dtype=np.int64)
        if item_attributes.ndim != 2 or len(item_attributes) != n_items:
            raise ValueError(f"item_attributes has shape {item_attributes.shape}, expected ({n_items}, A)")
        self.cfg = cfg
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        self.history_len = cfg.history_len
        self.padding_value = self.n_items
        self.takes_user_id = cfg.use_user_id  # the exported query graph reads a user index
        self.takes_history = True
        self.known_users = None  # the history gives anyone a query (training.teacher.protocol)
        self.dim = cfg.dim
        self.oov_user = self.n_users
        self.temperature = cfg.temperature
        D = cfg.dim
        n_categories = int(item_category.max()) + 1 if n_items and item_category.max() >= 0 else 0
        # Unknown category (-1) maps to the last row.
        cat_index = np.where(item_category >= 0, item_category, n_categories)
        self.register_buffer("item_cat", torch.as_tensor(cat_index, dtype=torch.long), persistent=False)
        self.register_buffer("item_price", torch.as_tensor(price_features(item_price)), persistent=False)
        if item_attributes.size and (item_attributes.min() < 0 or item_attributes.max() > n_attributes):
            raise ValueError(f"item_attributes must lie in [0, {n_attributes}] ({n_attributes} = padding)")
        self.n_attributes = int(n_attributes)
        attrs = torch.as_tensor(item_attributes, dtype=torch.long)
        self.register_buffer("item_attr", attrs, persistent=False)
        count = (attrs != self.n_attributes).sum(1, keepdim=True).clamp(min=1).to(torch.float32)
        self.register_buffer("item_attr_count", count, persistent=False)

        if cfg.use_user_id:
            self.user_emb = nn.Embedding(self.n_users + 1, D)  # last row: unknown users (OOV)
        self.item_emb = nn.Embedding(self.n_items + 1, D, padding_idx=self.n_items)  # the history's items
        if not cfg.tie_item_embeddings:  # the scored items' own id table (else item_emb is both)
            self.out_item_emb = nn.Embedding(self.n_items + 1, D, padding_idx=self.n_items)
        self.cat_emb = nn.Embedding(n_categories + 1, D)
        self.attr_emb = nn.Embedding(self.n_attributes + 1, D, padding_idx=self.n_attributes)
        self.price_proj = nn.Linear(2, D)
        if cfg.encoder == "transformer":
            self.pos_emb = nn.Embedding(cfg.history_len, D)  # position 0 = most recent item
            self.blocks = nn.ModuleList(
                [CausalBlock(D, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers)]
            )
        else:  # causal pooling: a learned weight per distance back in time, then an MLP
            self.rel_logit = nn.Parameter(torch.zeros(cfg.history_len))  # 0 = the item itself
            self.pool_mlp = nn.Sequential(
                nn.Linear(3 * D, 2 * D), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(2 * D, D)
            )
        self.ln_f = nn.LayerNorm(D)
        self.user_proj = nn.Linear(2 * D if cfg.use_user_id else D, D)
        self.item_proj = nn.Linear(D, D)
        self.drop = nn.Dropout(cfg.dropout)
        pos = [self.pos_emb] if cfg.encoder == "transformer" else []
        for emb in (self.item_emb, self.cat_emb, self.attr_emb, *pos, *self._out_tables()):
            nn.init.normal_(emb.weight, std=0.05)
        if cfg.use_user_id:
            nn.init.normal_(self.user_emb.weight, std=0.05)
        with torch.no_grad():
            for table in (self.item_emb, *self._out_tables()):
                table.weight[self.n_items].zero_()
            self.attr_emb.weight[self.n_attributes].zero_()

    def _out_tables(self) -> list[nn.Embedding]:
        return [] if self.cfg.tie_item_embeddings else [self.out_item_emb]

    def id_tables(self) -> list[nn.Embedding]:
        """The tables indexed by user or item id (sparse gradients apply to these)."""
        return [self.item_emb, *self._out_tables(), *([self.user_emb] if self.cfg.use_user_id else [])]

    # ---- item tower -------------------------------------------------------------------------
    def item_content_of(self, ids: torch.Tensor, table: nn.Embedding | None = None) -> torch.Tensor:
        """(..., D): id (from `table`, default the history's table) + category + attributes + price
        embedding of the given item ids; the pad id gives zeros.

        Only the rows asked for are computed: a batch over a 1M-item catalog must not push the
        whole catalog through the item tower (it did, once per step, and cost minutes per epoch).
        """
        real = ids != self.padding_value
        safe = torch.where(real, ids, torch.zeros_like(ids))
        ids_table = self.item_emb if table is None else table
        x = ids_table(ids) + self.cat_emb(self.item_cat[safe]) + self.price_proj(self.item_price[safe])
        x = x + self._tag_means(safe)
        return x * real.unsqueeze(-1).to(x.dtype)

    def _tag_means(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., D): the mean of each item's tag embeddings (zeros for an item with none).

        Training and eager scoring take one `embedding_bag`: it sums each item's tags without
        materialising the (..., A, D) gather: on a Beauty teacher, forward and backward of a step's
        item tower 0.65x and of its user tower 0.83x the gathered time (bench/results/tag_means.md,
        `python -m bench.tag_means`). The ONNX export keeps the plain gather-and-sum graph its
        parity tests were written for; both forms give the same values
        (tests/training/teacher/test_two_tower.py holds them together).
        """
        attrs = self.item_attr[ids]  # (..., A), padded with n_attributes
        if torch.onnx.is_in_onnx_export():
            return self.attr_emb(attrs).sum(-2) / self.item_attr_count[ids]
        flat = F.embedding_bag(
            attrs.reshape(-1, attrs.shape[-1]),
            self.attr_emb.weight,
            mode="mean",
            padding_idx=self.n_attributes,
        )
        return flat.view(*ids.shape, flat.shape[-1])

    def item_vectors_of(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., D) vectors of the given item ids (`item_vectors()[ids]`, computed for those only)."""
        x = self.item_content_of(ids, None if self.cfg.tie_item_embeddings else self.out_item_emb)
        x = x + self.item_proj(x)
        return F.normalize(x, dim=-1) if self.cfg.score == "cosine" else x

    def item_vectors(self) -> torch.Tensor:
        """(N, D) item vectors (unit vectors for the cosine head); scores are user_vectors @ item_vectors().T."""
        return self.item_vectors_of(torch.arange(self.n_items, device=self.item_cat.device))

    # ---- user tower -------------------------------------------------------------------------
    def sequence_vectors(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        """(B, L, D): the user vector after each position of the history (causal).

        Training uses every position (one forward pass yields L next-item predictions);
        serving uses the last one. user: (B,) (unused without a user-id table, may be None),
        history: (B, L) left-padded with n_items.
        """
        B, L = history.shape
        pad = history == self.padding_value  # (B, L)
        h = self.ln_f(self._encode(history, pad))  # (B, L, D)
        if self.cfg.use_user_id:
            assert user is not None, "this teacher has a user-id table: pass the user indices"
            u = self.drop(self.user_emb(user))[:, None].expand(B, L, -1)
            h = torch.cat([h, u], dim=-1)
        v = self.user_proj(h)
        return F.normalize(v, dim=-1) / self.temperature if self.cfg.score == "cosine" else v

    def _encode(self, history: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """(B, L, D): the history encoder's state after each position (causal)."""
        L = history.shape[1]
        # Masks from index comparisons (not eye/tril on bool): onnxruntime has no bool EyeLike kernel.
        idx = torch.arange(L, device=history.device)
        causal = idx[None, :] <= idx[:, None]  # (L, L) key <= query
        if self.cfg.encoder == "pooling":
            return self._pool(self.drop(self.item_content_of(history)), pad, idx, causal)
        pos = idx.flip(0)  # most recent = 0
        x = self.drop(self.item_content_of(history) + self.pos_emb(pos)[None])
        eye = idx[None, :] == idx[:, None]
        allowed = causal[None] & (~pad[:, None, :] | eye[None])  # a pad row may attend to itself only
        bias = torch.where(allowed, 0.0, NEG_INF).to(x.dtype)[:, None]  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, bias)
        return x

    def _pool(
        self, x: torch.Tensor, pad: torch.Tensor, idx: torch.Tensor, causal: torch.Tensor
    ) -> torch.Tensor:
        """Causal pooling: at position t, recency-weighted and plain means of the items up to t, and
        item t itself, through an MLP. Weights depend on the distance t - s only, so left padding and
        the window's position in the user's sequence never change an output."""
        keep = (~pad).to(x.dtype)  # (B, L)
        distance = (idx[:, None] - idx[None, :]).clamp(0, self.history_len - 1)  # (L, L): t - s
        w = torch.exp(self.rel_logit[distance]) * causal.to(x.dtype)  # (L, L)
        wk = w[None] * keep[:, None, :]  # (B, L, L)
        recency = (wk @ x) / (wk.sum(-1, keepdim=True) + 1e-6)  # (B, L, D)
        ck = causal.to(x.dtype)[None] * keep[:, None, :]
        mean = (ck @ x) / (ck.sum(-1, keepdim=True) + 1e-6)
        return self.pool_mlp(torch.cat([recency, mean, x], dim=-1)) + recency

    def user_vectors(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        """(B, D): the query vector from the user id (when the teacher has a table) and the left-padded history."""
        return self.sequence_vectors(user, history)[:, -1]

    def query_vectors(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        """training.teacher.protocol.Teacher: `user_vectors`, the user ignored without a user-id table."""
        return self.user_vectors(user if self.takes_user_id else None, history)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(user, history)


def teacher_checkpoint(model: TwoTowerTeacher, item_category: np.ndarray, item_price: np.ndarray) -> dict:
    """Everything `load_teacher` needs to rebuild the model (nanoGPT style: args beside weights)."""
    return {
        "kind": "teacher",
        "config": model.cfg.model_dump(mode="json"),
        "state_dict": model.state_dict(),
        "n_users": model.n_users,
        "n_items": model.n_items,
        "item_category": torch.as_tensor(np.asarray(item_category, dtype=np.int64)),
        "item_price": torch.as_tensor(np.asarray(item_price, dtype=np.float32)),
        "item_attributes": model.item_attr.detach().cpu().clone(),
        "n_attributes": model.n_attributes,
    }


def load_teacher(path: Path) -> TwoTowerTeacher:
    """Rebuild a teacher from its checkpoint, in eval mode."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("kind") != "teacher":
        raise ValueError(f"{path}: not a teacher checkpoint (kind={ckpt.get('kind')!r})")
    model = TwoTowerTeacher(
        ckpt["n_users"],
        ckpt["item_category"].numpy(),
        ckpt["item_price"].numpy(),
        TeacherConfig.model_validate(ckpt["config"]),
        item_attributes=ckpt["item_attributes"].numpy() if "item_attributes" in ckpt else None,
        n_attributes=int(ckpt.get("n_attributes", 0)),
    )
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
