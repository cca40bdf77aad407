"""The MLP student: the user *is* their last L items, so it serves new users and anonymous sessions.

No user-id table. The history (left-padded with `n_items`) is embedded with small item vectors
(dim <= 32), pooled three ways (recency-weighted, mean, last item), passed through an MLP, and
scored by a dot product with the same item table, so top-k over the catalog is one matrix product.
Positions count from the right, so extra left padding never changes the output.

A trained student may carry a per-item score bias (`calibrate`, training/student/calibrate.py: a penalty on
log popularity chosen on validation). It is one more vector column - the item's bias against a
constant 1 in the user's vector - so scoring stays one dot product in PyTorch, ONNX and the service.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from training.config import StudentConfig


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (buffers such as item features are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class MLPStudent(nn.Module):
    def __init__(self, n_items: int, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        self.n_items = int(n_items)
        self.history_len = cfg.history_len
        self.padding_value = self.n_items
        d = cfg.dim
        self.item_emb = nn.Embedding(self.n_items + 1, d, padding_idx=self.n_items)  # input and output
        self.pos_logit = nn.Parameter(torch.zeros(cfg.history_len))  # recency weights, 0 = most recent
        layers: list[nn.Module] = []
        width = 3 * d
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, d))
        self.mlp = nn.Sequential(*layers)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        with torch.no_grad():
            self.item_emb.weight[self.n_items].zero_()
        # (N + 1,) score bias, the padding row 0; None = uncalibrated (always so while training).
        # A plain attribute, not a buffer: checkpoints without one still load, and `.to()` does not
        # move it (calibration happens on the host, after training).
        self.score_bias: torch.Tensor | None = None

    def calibrate(self, bias: torch.Tensor | None) -> MLPStudent:
        """Add `bias[i]` to every score of item i (None removes it); vectors gain one column."""
        if bias is None:
            self.score_bias = None
            return self
        if bias.shape != (self.n_items,):
            raise ValueError(f"score bias of shape {tuple(bias.shape)}, expected ({self.n_items},)")
        device = self.item_emb.weight.device
        self.score_bias = torch.cat([bias.to(device, torch.float32), torch.zeros(1, device=device)])
        return self

    def uncalibrated(self) -> MLPStudent:
        """A copy without the score bias: the model as trained."""
        clone = copy.deepcopy(self)
        clone.score_bias = None
        return clone

    def item_vectors(self) -> torch.Tensor:
        """(N, d[+1]): the item table doubles as the output embedding (weight tying halves the size)."""
        table = self.item_emb.weight[: self.n_items]
        if self.score_bias is None:
            return table
        return torch.cat([table, self.score_bias[: self.n_items, None]], dim=-1)

    def item_vectors_of(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., d[+1]): `item_vectors()[ids]` through the embedding lookup, so sparse gradients apply."""
        if self.score_bias is None:
            return self.item_emb(ids)
        return torch.cat([self.item_emb(ids), self.score_bias[ids][..., None]], dim=-1)

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """(B, d) from a (B, L) history, left-padded with n_items, most recent last."""
        B, L = history.shape
        mask = (history != self.padding_value).to(torch.float32)  # (B, L)
        e = self.drop(self.item_emb(history))  # (B, L, d); pad rows are zero
        pos = self.pos_logit[:L].flip(0)  # (L,) weight of each column; last column = most recent
        w = torch.exp(pos - pos.max())[None] * mask  # (B, L)
        recency = (w[..., None] * e).sum(1) / (w.sum(1, keepdim=True) + 1e-6)  # (B, d)
        mean = (mask[..., None] * e).sum(1) / (mask.sum(1, keepdim=True) + 1e-6)  # (B, d)
        last = e[:, -1]  # (B, d)
        x = torch.cat([recency, mean, last], dim=-1)
        out = self.mlp(x) + recency
        if self.score_bias is None:
            return out
        return torch.cat([out, torch.ones_like(out[:, :1])], dim=-1)  # meets the items' bias column

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(history)


def student_checkpoint(model: MLPStudent) -> dict:
    return {
        "kind": "student",
        "config": model.cfg.model_dump(mode="json"),
        "state_dict": model.state_dict(),
        "n_items": model.n_items,
        "score_bias": None if model.score_bias is None else model.score_bias[: model.n_items].cpu(),
    }


def load_student(path: Path) -> MLPStudent:
    """Rebuild a student from its checkpoint, in eval mode."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("kind") != "student":
        raise ValueError(f"{path}: not a student checkpoint (kind={ckpt.get('kind')!r})")
    model = MLPStudent(ckpt["n_items"], StudentConfig.model_validate(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.calibrate(ckpt.get("score_bias")).eval()
