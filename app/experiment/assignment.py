"""Sticky, deterministic A/B assignment: which model (arm) answers a given user or session.

The arm is a pure function of (experiment name, salt, unit id) through sha256, so it is the same
across restarts, replicas and Python versions (Python's hash() is salted per process, never used).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Arm = Literal["student", "teacher", "serving", "candidate"]
ARMS: tuple[Arm, ...] = ("student", "teacher")
# What an experiment compares: the serving version's teacher vs its student, or the serving version's
# student vs the candidate version's student (app/engine/candidate.py). (control, treatment) arms.
ArmsKind = Literal["teacher_vs_student", "serving_vs_candidate"]
ARM_PAIRS: dict[str, tuple[Arm, Arm]] = {
    "teacher_vs_student": ("student", "teacher"),
    "serving_vs_candidate": ("serving", "candidate"),
}
SERVING_ARMS: tuple[Arm, ...] = ("student", "serving")  # answered by the serving version's student
FORCE_ARM_HEADER = "X-Recdistill-Arm"  # testing only: pins the arm of one request
SESSION_HEADER = "X-Session-Id"  # the unit for anonymous callers
_SCALE = float(1 << 64)


class AssignmentError(ValueError):
    """A request whose arm cannot be decided (bad forced arm, no unit id); the message names the field."""


@dataclass(frozen=True)
class Assignment:
    arm: Arm
    unit: str  # "user:<id>" or "session:<id>" or "anonymous": what the split is counted over
    forced: bool = False


@dataclass(frozen=True)
class Experiment:
    """An experiment: units whose bucket falls below `teacher_share` get the treatment arm (the teacher,
    or the candidate when `arms` is "serving_vs_candidate"; the field keeps its historical name)."""

    name: str
    salt: str
    teacher_share: float = 0.0  # the treatment's share of units
    arms: ArmsKind = "teacher_vs_student"

    def __post_init__(self) -> None:
        if not 0.0 <= self.teacher_share <= 1.0:
            raise ValueError(f"teacher_share must lie in [0, 1], got {self.teacher_share}")
        if self.arms not in ARM_PAIRS:
            raise ValueError(f"arms must be one of {sorted(ARM_PAIRS)}, got {self.arms!r}")

    @property
    def control(self) -> Arm:
        return ARM_PAIRS[self.arms][0]

    @property
    def treatment(self) -> Arm:
        return ARM_PAIRS[self.arms][1]

    @property
    def shares(self) -> dict[str, float]:
        return {self.control: 1.0 - self.teacher_share, self.treatment: self.teacher_share}

    def bucket(self, unit: str) -> float:
        """A uniform number in [0, 1) from sha256(name, salt, unit); stable forever for these inputs."""
        digest = hashlib.sha256(f"{self.name}\x1f{self.salt}\x1f{unit}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / _SCALE

    def arm_for(self, unit: str) -> Arm:
        return self.treatment if self.bucket(unit) < self.teacher_share else self.control

    def assign(
        self, user_id: str | None, session_id: str | None = None, forced_arm: str | None = None
    ) -> Assignment:
        """The arm for one request: the user id decides when known, else the session id.

        A request with neither is served by the control arm and counted under "anonymous" (there is
        no unit to keep it sticky). A forced arm (the test header) wins but is marked so reports can
        leave it out.
        """
        unit = f"user:{user_id}" if user_id else f"session:{session_id}" if session_id else "anonymous"
        if forced_arm is not None:
            arm = forced_arm.strip().lower()
            arms = ARM_PAIRS[self.arms]
            if arm not in arms:
                raise AssignmentError(
                    f"header {FORCE_ARM_HEADER}: unknown arm {forced_arm!r}, expected one of {arms}"
                )
            return Assignment(arm, unit, forced=True)  # type: ignore[arg-type]
        if unit == "anonymous":
            return Assignment(self.control, unit)
        return Assignment(self.arm_for(unit), unit)
