"""The `recdistill` command: exit codes, error messages without tracebacks, and a torch-free import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.cli import build_parser, main, summary

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


def test_importing_the_cli_pulls_in_neither_torch_nor_pandas() -> None:
    """The serving image has no torch; `recdistill serve` must still start."""
    code = "import sys, training.cli; bad = {'torch', 'pandas'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


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
