"""The teacher and the scratch student as one teacher, for soft labels (`distill.soft_labels_from`).

Every model here scores by dot product, so the sum of two models' logits is one dot product over
concatenated vectors: [q_teacher, q_scratch] . [i_teacher, i_scratch] = s_teacher + s_scratch. The
sum is a product of experts (each model's logits are log-probabilities up to a constant: both are
trained with a full or logQ-corrected softmax), and it only ever produces soft labels: the teacher
that is exported, shadowed and compared stays the user's teacher.

Why: on a sparse shop log the small history-MLP trained from scratch can rank as well as the big
teacher (Amazon Beauty, valid NDCG@10: scratch 0.0630, SASRec-style teacher 0.0615), so the
teacher's labels alone teach the student nothing it cannot learn by itself (distilled 0.0619). The
two models err differently; distilled from their sum, the student reached 0.0703 on the same split
(seed 0; the 3-seed test figures are in bench/results/quality_amazon-beauty.md). Ensembles of
teachers and born-again students (Furlanello et al., ICML 2018) are the same idea.
"""

from __future__ import annotations

import numpy as np
import torch

from training.student.model import MLPStudent
from training.teacher.protocol import Teacher


class TeacherPlusStudent:
    """A `Teacher` whose scores are teacher + student scores (the student reads the history only)."""

    def __init__(self, teacher: Teacher, student: MLPStudent) -> None:
        if student.n_items != teacher.n_items:
            raise ValueError(f"the student scores {student.n_items} items, the teacher {teacher.n_items}")
        self.teacher, self.student = teacher, student.eval()
        self.n_users, self.n_items = teacher.n_users, teacher.n_items
        self.takes_user_id, self.takes_history = teacher.takes_user_id, True
        self.history_len = max(teacher.history_len, student.cfg.history_len)
        self.padding_value, self.oov_user = teacher.padding_value, teacher.oov_user
        self.known_users: np.ndarray | None = teacher.known_users
        self.dim = teacher.dim + student.cfg.dim
        with torch.no_grad():
            self._items = torch.cat([teacher.item_vectors(), student.item_vectors()], dim=1).detach()

    def query_vectors(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        """Each model reads the last `history_len` items it was trained on."""
        t_hist = history[:, -self.teacher.history_len :] if self.teacher.takes_history else history
        with torch.no_grad():
            q_teacher = self.teacher.query_vectors(user, t_hist)
            q_student = self.student.user_vectors(history[:, -self.student.cfg.history_len :])
        return torch.cat([q_teacher.to(q_student.device), q_student], dim=1)

    def item_vectors(self) -> torch.Tensor:
        return self._items

    def eval(self) -> TeacherPlusStudent:
        return self

    def n_parameters(self) -> int:
        return self.teacher.n_parameters() + sum(p.numel() for p in self.student.parameters())
