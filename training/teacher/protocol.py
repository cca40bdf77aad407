"""What every later stage needs from a teacher, whoever wrote it.

Soft labels, evaluation, ONNX export and parity read a teacher only through this Protocol, so our
own `TwoTowerTeacher` and an imported one (training/teacher/imported.py: an ONNX two-tower, a PyTorch
module, or embedding tables) go through the same code. Everything is in the data's index space:
item indices 0..n_items-1 with `padding_value` (= n_items) as the left pad of a history, user
indices 0..n_users-1 with `oov_user` (= n_users) for a user the teacher does not know.

Scores are dot products: `query_vectors(user, history) @ item_vectors().T`. The student, the soft
labels, the exported top-k graph and the service all score that way, so a teacher with another head
cannot be distilled or served as is.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import onnx
import torch


@runtime_checkable
class Teacher(Protocol):
    n_users: int
    n_items: int
    takes_user_id: bool  # the query reads a user index (the exported graph has a `user` input)
    takes_history: bool  # the query reads the padded history (False: a lookup by user id)
    history_len: int
    padding_value: int  # == n_items
    oov_user: int  # == n_users: the row an unknown user maps to
    dim: int
    # bool [n_users] for a lookup teacher (embedding tables): the users it has a vector for. None: the
    # teacher computes a query for anyone (from the history), so no user is unknown to it.
    known_users: np.ndarray | None

    def query_vectors(self, user: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor:
        """(B, D) from user indices (B,) (None when `takes_user_id` is False) and histories (B, L)."""
        ...

    def item_vectors(self) -> torch.Tensor:
        """(N, D): scores are query_vectors @ item_vectors().T."""
        ...

    def n_parameters(self) -> int:
        """The teacher's size for the report (weights and tables)."""
        ...


@runtime_checkable
class HasOnnxGraph(Protocol):
    """A teacher that already is an ONNX query graph: export copies it instead of tracing PyTorch."""

    def onnx_user_graph(self) -> onnx.ModelProto:
        """The query graph with the contract's names: [user,] history -> user_vector."""
        ...


def teacher_device(teacher: Teacher) -> torch.device:
    """Where the teacher's tensors live (an imported ONNX teacher: always the CPU)."""
    return teacher.item_vectors().device
