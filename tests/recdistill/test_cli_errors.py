"""The CLI answers an error by what it means (core/errors.py), never by its class name: bad input
exits 2 with one line, a check that published nothing exits 1, a refused gate exits 3 with its lines.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import recdistill.cli as cli
from app.config import SettingsError
from app.engine.versions import VersionError
from app.stores.pins import PinError
from app.stores.redis_client import RedisUnavailable
from core.errors import GatesFailed, NotPublished, UserError
from core.holdout import HoldoutError
from core.manifest import ManifestError
from recdistill.simulate_ab import SimulationError
from training.config import ConfigError
from training.data.types import DataError
from training.evaluate.gates import GateError
from training.export.ann import AnnError
from training.export.graphs import ParityError
from training.export.publish import PublishError
from training.teacher.spec import TeacherImportError
from training.workdir import StageError

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.toml"


class NewBadInput(UserError, ValueError):
    """An error no list names: its base alone decides how the CLI answers."""


def _run(monkeypatch: pytest.MonkeyPatch, exc: BaseException, argv: list[str]) -> int:
    def command(args: object) -> int:
        raise exc

    module = types.SimpleNamespace(user_errors=lambda: ())
    monkeypatch.setattr(cli, "_handler", lambda dotted: (command, module))
    return cli.main(argv)


def test_any_user_error_exits_2_with_one_line_naming_the_command(monkeypatch, capsys) -> None:
    code = _run(
        monkeypatch,
        NewBadInput("events.csv, row 3:\n  missing user id"),
        ["data", "check", "--config", str(TINY)],
    )
    assert code == 2
    assert capsys.readouterr().err == "recdistill data check: error: events.csv, row 3: missing user id\n"


def test_a_check_that_published_nothing_exits_1(monkeypatch, capsys) -> None:
    code = _run(
        monkeypatch, ParityError("student ONNX parity failed on 50 rows"), ["export", "--config", str(TINY)]
    )
    assert code == 1
    assert capsys.readouterr().err == "recdistill export: failed: student ONNX parity failed on 50 rows\n"


def test_a_refused_gate_exits_3_with_one_line_per_gate(monkeypatch, capsys) -> None:
    gates = GateError(
        ["gate student_vs_scratch failed: 0.09 < 0.10", "gate student_vs_popularity failed"], {}
    )
    assert _run(monkeypatch, gates, ["pipeline", "--config", str(TINY)]) == 3
    assert capsys.readouterr().err.splitlines() == [
        "gate student_vs_scratch failed: 0.09 < 0.10",
        "gate student_vs_popularity failed",
        "recdistill pipeline: not published (--set publish.require_gates=false publishes anyway)",
    ]


def test_an_error_that_is_none_of_ours_is_a_bug_and_is_not_hidden(monkeypatch) -> None:
    with pytest.raises(ZeroDivisionError):
        _run(monkeypatch, ZeroDivisionError("a bug"), ["data", "check", "--config", str(TINY)])


@pytest.mark.parametrize(
    ("error", "base", "builtin"),
    [
        (ConfigError, UserError, ValueError), (DataError, UserError, ValueError),
        (StageError, UserError, ValueError), (TeacherImportError, UserError, ValueError),
        (HoldoutError, UserError, ValueError), (ManifestError, UserError, ValueError),
        (SettingsError, UserError, ValueError), (VersionError, UserError, ValueError),
        (SimulationError, UserError, RuntimeError), (PinError, UserError, RuntimeError),
        (RedisUnavailable, UserError, RuntimeError),
        (ParityError, NotPublished, RuntimeError), (PublishError, NotPublished, RuntimeError),
        (AnnError, NotPublished, RuntimeError), (GateError, GatesFailed, Exception),
    ],
)  # fmt: skip
def test_every_error_says_what_it_means_and_keeps_its_builtin_base(error, base, builtin) -> None:
    assert issubclass(error, base) and issubclass(error, builtin)
    assert not (issubclass(error, UserError) and issubclass(error, NotPublished))
