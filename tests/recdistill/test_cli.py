"""The `recdistill` command: exit codes, error messages without tracebacks, and a torch-free import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recdistill.cli import build_parser, main
from recdistill.offline import summary
from tests.blocked_imports import run_cli_blocked

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.toml"


def _file_config(tmp_path: Path, csv_text: str) -> Path:
    csv = tmp_path / "events.csv"
    csv.write_text(csv_text)
    cfg = tmp_path / "file.toml"
    cfg.write_text(f'name = "file"\n[data]\nsource = "file"\npath = "{csv}"\n')
    return cfg


def test_bad_csv_exits_2_naming_file_row_and_column(tmp_path: Path, capsys) -> None:
    cfg = _file_config(tmp_path, "user_id,item_id,timestamp\nu1,i1,100\nu1,i2,yesterday\n")
    assert main(["data", "check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "events.csv" in err and "row 3" in err and "column 'timestamp'" in err and "yesterday" in err
    assert "Traceback" not in err


def test_missing_column_exits_2(tmp_path: Path, capsys) -> None:
    cfg = _file_config(tmp_path, "user,item_id,timestamp\nu1,i1,100\n")
    assert main(["data", "check", "--config", str(cfg)]) == 2
    assert "user_id" in capsys.readouterr().err


def test_bad_set_value_exits_2_naming_the_key(capsys) -> None:
    assert main(["data", "check", "--config", str(TINY), "--set", "teacher.epochs=-3"]) == 2
    err = capsys.readouterr().err
    assert "teacher.epochs" in err and "greater than 0" in err


def test_unknown_set_key_and_malformed_set_exit_2(capsys) -> None:
    assert main(["teacher", "--config", str(TINY), "--set", "teacher.nope=1"]) == 2
    assert "teacher.nope" in capsys.readouterr().err
    assert main(["teacher", "--config", str(TINY), "--set", "teacher.epochs"]) == 2
    assert "expected key=value" in capsys.readouterr().err


def test_unknown_config_key_names_the_closest_valid_one(tmp_path: Path, capsys) -> None:
    """Regression: an unknown key answered "Extra inputs are not permitted", naming neither the fix nor
    where the key came from."""
    assert main(["data", "check", "--config", str(TINY), "--set", "teacher.epochz=3"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "recdistill data check: error: --set teacher.epochz: unknown key (did you mean teacher.epochs?)\n"
    )
    cfg = tmp_path / "shop.toml"
    cfg.write_text("[student]\nhiden = [32]\n")
    assert main(["data", "check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"recdistill data check: error: {cfg}: student.hiden: unknown key (did you mean student.hidden?)\n"
    )


def test_a_missing_data_file_names_the_config_key(tmp_path: Path, capsys) -> None:
    """Regression: the message named the file but not `data.path`, the key that named it."""
    cfg = tmp_path / "file.toml"
    cfg.write_text(f'[data]\nsource = "file"\npath = "{tmp_path / "orders.csv"}"\n')
    assert main(["data", "check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"recdistill data check: error: {tmp_path / 'orders.csv'}: no such file (named by data.path)\n"
    )


def test_data_check_needs_a_config(capsys) -> None:
    """Regression: without --config it checked configs/synthetic.toml, a default the user never named."""
    with pytest.raises(SystemExit) as exc:
        main(["data", "check"])
    assert exc.value.code == 2
    assert "the following arguments are required: --config" in capsys.readouterr().err


def test_a_missing_default_config_says_it_was_the_default(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # outside the repository: configs/synthetic.toml is not here
    assert main(["teacher"]) == 2
    assert capsys.readouterr().err == (
        "recdistill teacher: error: configs/synthetic.toml: no such config file (the default when --config "
        "is not given: run from the repository root, or pass --config)\n"
    )


def test_missing_config_file_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["pipeline", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_argparse_usage_errors_exit_2() -> None:
    for argv in (["frobnicate"], [], ["serve", "--port", "eighty"], ["data", "fetch", "ml-1m"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_export_without_checkpoints_exits_2(tmp_path: Path, capsys) -> None:
    argv = [
        "export",
        "--config",
        str(TINY),
        "--set",
        f"work_dir={tmp_path}",
        "--set",
        "data.synthetic.n_users=50",
    ]
    assert main(argv) == 2
    assert "teacher.json: not found" in capsys.readouterr().err


def test_data_check_prints_a_summary(capsys) -> None:
    assert main(["data", "check", "--config", str(TINY), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "300 users, 120 items, 6000 interactions" in out and "fingerprint" in out


def test_parser_wires_every_subcommand() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--models", "m", "--port", "9000"])
    assert (args.models, args.host, args.port) == ("m", "127.0.0.1", 9000)
    args = parser.parse_args(["simulate-ab", "--requests", "5"])
    assert args.requests == 5 and args.url.startswith("http://")
    args = parser.parse_args(["events", "export", "--db", "e.db", "--out", "e.csv"])
    assert (args.db, args.out) == ("e.db", "e.csv")
    args = parser.parse_args(["pipeline", "--set", "a=1", "--set", "b=2"])
    assert args.set == ["a=1", "b=2"] and args.config == "configs/synthetic.toml"


def test_importing_the_cli_pulls_in_neither_torch_pandas_nor_training() -> None:
    """The serving image has no torch and no training/; `recdistill serve` must still start."""
    code = "import sys, recdistill.cli; bad = {'torch', 'pandas', 'training'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_pipeline_without_torch_says_in_one_line_how_to_install_it() -> None:
    proc = run_cli_blocked(["pipeline", "--config", str(TINY)], blocked=("torch",))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "recdistill pipeline: needs torch (the `train` extra); install it with: pip install 'recdistill[train]'"
    ]


def test_offline_commands_without_training_say_how_to_install_it() -> None:
    for argv in (["teacher", "--config", str(TINY)], ["data", "check", "--config", str(TINY)]):
        proc = run_cli_blocked(argv, blocked=("torch", "training"))
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "training/" in line and "pip install 'recdistill[train]'" in line


def test_events_export_runs_without_training_or_torch(tmp_path: Path) -> None:
    """A service command: it imports app and core only (it would fail on the blocked import otherwise)."""
    db = tmp_path / "history.sqlite3"
    code = (
        "import sqlite3, sys; from app.stores.history_sqlite import SCHEMA; c = sqlite3.connect(sys.argv[1]); "
        'c.executescript(SCHEMA); c.execute("INSERT INTO interactions (user_id, item_id, ts, event, source) '
        "VALUES ('u', 'i', 5, NULL, 'event')\"); c.commit()"
    )
    subprocess.run([sys.executable, "-c", code, str(db)], cwd=ROOT, check=True)
    proc = run_cli_blocked(["events", "export", "--db", str(db), "--out", str(tmp_path / "e.csv")])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "e.csv").read_text().splitlines() == ["user_id,item_id,timestamp,event", "u,i,5,"]


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"RECDISTILL_ADMIN_TOKEN": "short"}, "RECDISTILL_ADMIN_TOKEN"),
        ({"RECDISTILL_MAX_K": "lots"}, "RECDISTILL_MAX_K"),
        ({"RECDISTILL_SHADOW_RATE": "1.5"}, "RECDISTILL_SHADOW_RATE"),
        ({"RECDISTILL_HISTORY_BACKEND": "redis"}, "RECDISTILL_REDIS_URL"),
        ({"RECDISTILL_LOG_LEVEL": "loud"}, "RECDISTILL_LOG_LEVEL"),
    ],
)
def test_a_bad_setting_stops_serve_with_one_line_naming_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    """Regression: a too-short RECDISTILL_ADMIN_TOKEN gave a pydantic traceback from `recdistill serve`."""
    env = {**env, "RECDISTILL_HISTORY_DB": str(tmp_path / "h.sqlite3")}
    proc = run_cli_blocked(["serve", "--models", str(tmp_path / "models"), "--port", "1"], env=env)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("recdistill serve: error: ") and variable in line
    assert "Traceback" not in proc.stderr and "short" not in line  # a secret is never echoed


def test_summary_fits_one_screen() -> None:
    row = {"hr@10": 0.5, "ndcg@10": 0.25, "users": 3.0}
    manifest = {
        "version": "v1",
        "dataset": {"name": "shop", "n_users": 3, "n_items": 5, "n_interactions": 9},
        "metrics": {
            "test": {"teacher": row, "student": row},
            "agreement": {"student": {"overlap@10": 0.7, "rbo": 0.6, "kendall_tau": None}},
            "parameters": {"teacher": 1000, "student": 250},
            "seconds": {"teacher": 3.0},
        },
        "parity": {"student": {"passed": True, "rows": 1000}},
    }
    text = summary(manifest, Path("models/v1"), 61.0)
    assert text.splitlines()[0] == "published v1 -> models/v1  (61 s)"
    assert "student 250 (25.0%)" in text and "student ok (1000 rows)" in text
    assert "overlap@10 0.700" in text and "kendall_tau" not in text
    assert len(text.splitlines()) <= 24
