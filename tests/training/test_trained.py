"""training/trained.py: the models a publish needs, their sizes, and models that do not fit the data."""

from __future__ import annotations

import pytest

from tests.fixtures.hand_made import hand_made_log
from tests.fixtures.torch_models import N_ITEMS, N_USERS, tiny_student, tiny_teacher
from training.student.model import count_parameters
from training.trained import Trained, check_shapes
from training.workdir import StageError


def test_parameter_counts_name_each_model_trained() -> None:
    teacher, student = tiny_teacher(), tiny_student()
    trained = Trained(teacher=teacher, student=student)
    counts = trained.parameter_counts()
    assert counts == {"teacher": teacher.n_parameters(), "student": count_parameters(student)}
    assert counts["student"] == sum(p.numel() for p in student.parameters())
    trained.scratch = tiny_student()
    assert trained.parameter_counts()["scratch"] == counts["student"]


def test_models_trained_on_another_catalogue_are_refused_with_what_to_do() -> None:
    trained = Trained(teacher=tiny_teacher(), student=tiny_student())
    fits = hand_made_log([0], [0], N_USERS, N_ITEMS)
    check_shapes(trained, fits)
    with pytest.raises(
        StageError, match=f"teacher was trained on {N_USERS} users / {N_ITEMS} items, the data has"
    ):
        check_shapes(trained, hand_made_log([0], [0], N_USERS + 1, N_ITEMS))
    trained.sweep.append((2.0, tiny_student()))
    trained.teacher.n_items = N_ITEMS + 1  # the teacher matches a bigger catalogue; a student does not
    with pytest.raises(
        StageError, match=f"a student was trained on {N_ITEMS} items, the data has {N_ITEMS + 1}"
    ):
        check_shapes(trained, hand_made_log([0], [0], N_USERS, N_ITEMS + 1))
