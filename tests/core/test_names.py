"""The closest valid name to a mistyped one: typos, a dropped separator, a key in the wrong section."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from core.names import closest, did_you_mean, model_keys

KEYS = ["teacher", "teacher.epochs", "teacher.dim", "student", "student.hidden", "distill", "distill.top_m"]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("teacher.epochz", "teacher.epochs"),  # a typo
        ("student.hiden", "student.hidden"),  # a dropped letter
        ("teachr", "teacher"),  # a section
        ("TEACHER.EPOCHS", "teacher.epochs"),  # case does not matter; the valid spelling is returned
        ("teacher.top_m", "distill.top_m"),  # the right key in the wrong section
        ("SHADOWRATE", "SHADOW_RATE"),  # a dropped separator
    ],
)
def test_the_closest_valid_name(typed: str, meant: str) -> None:
    assert closest(typed, [*KEYS, "SHADOW_RATE", "SHADOW_THREADS"]) == meant


def test_nothing_close_gives_no_suggestion() -> None:
    assert closest("zzzz", KEYS) is None
    assert did_you_mean("zzzz", KEYS) == ""
    assert did_you_mean("teacher.epochz", KEYS) == " (did you mean teacher.epochs?)"


class _Inner(BaseModel):
    a: int = 1
    b: list[int] = []


class _Outer(BaseModel):
    inner: _Inner = _Inner()
    c: str = ""


def test_model_keys_lists_sections_and_their_fields() -> None:
    assert model_keys(_Outer) == ["inner", "inner.a", "inner.b", "c"]
