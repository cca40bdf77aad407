"""PASS / FAIL / N/A from measured numbers: how every benchmark states a check.

A check is computed from what was measured, never asserted in tests: `meets` compares a number with
its target (None when the number was not measured), `status` says it in words, and `Check` is one
named result with the numbers behind it (JSON: name, status, detail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PASS, FAIL, NA = "PASS", "FAIL", "N/A"


def status(passed: bool | None, na: str = NA) -> str:
    """PASS, FAIL, or `na` when the check could not be computed."""
    if passed is None:
        return na
    return PASS if passed else FAIL


def meets(value: float | None, op: str, threshold: float, slack: float = 0.0) -> bool | None:
    """`value op threshold` for op "<=" or ">=" (a value within `slack` of the threshold passes);
    None when the value was not measured."""
    if value is None:
        return None
    if op == "<=":
        return value <= threshold + slack
    if op == ">=":
        return value >= threshold - slack
    raise ValueError(f"unknown comparison {op!r}, expected '<=' or '>='")


def lookup(data: dict[str, Any], dotted: str) -> Any:
    """data["a"]["b"] for "a.b"; None where any part is missing (not measured)."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: not computable (a model it compares was not run)
    detail: str

    @property
    def status(self) -> str:
        return status(self.passed)

    def as_dict(self) -> dict[str, str]:
        """The form the benchmarks' JSON keeps."""
        return {"name": self.name, "status": self.status, "detail": self.detail}
