"""Config errors name the key (its full dotted path), where it came from (the file or the `--set`) and,
for an unknown key, the closest valid one; they used to say only "Extra inputs are not permitted"."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError
from training.config_file import load_config


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shop.toml"
    path.write_text(text)
    return path


def _error(path: Path | None, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path, overrides)
    return str(exc.value)


def test_an_unknown_key_in_the_file_names_the_file_the_key_and_the_closest(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[teacher]\nepochz = 3\n")
    assert _error(path) == f"{path}: teacher.epochz: unknown key (did you mean teacher.epochs?)"


def test_an_unknown_section_in_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[teachr]\nepochs = 3\n")
    assert _error(path) == f"{path}: teachr: unknown key (did you mean teacher?)"


def test_an_unknown_key_set_on_the_command_line_names_the_set(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'name = "shop"\n')
    message = _error(path, ["student.hiden=[32]"])
    assert message == "--set student.hiden: unknown key (did you mean student.hidden?)"
    # the right key in the wrong section points to the section that has it
    assert (
        _error(None, ["teacher.top_m=5"]) == "--set teacher.top_m: unknown key (did you mean distill.top_m?)"
    )
    assert _error(None, ["zzzz=1"]) == "--set zzzz: unknown key"


def test_an_unknown_section_under_a_set_key_names_both(tmp_path: Path) -> None:
    assert _error(None, ["data.colums.user=customer"]) == (
        "--set data.colums.user: data.colums: unknown key (did you mean data.columns?)"
    )


def test_every_error_is_reported_with_its_own_origin(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[teacher]\nepochz = 3\n")
    assert _error(path, ["student.epochs=-1"]) == (
        f"{path}: teacher.epochz: unknown key (did you mean teacher.epochs?); "
        "--set student.epochs: Input should be greater than 0"
    )


def test_a_check_across_keys_says_the_file_and_the_set_both_took_part(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[distill]\nsoft_labels_from = "teacher+scratch"\n')
    assert _error(path, ["distill.train_scratch=false"]) == (
        f"{path} and --set: distill: distill.soft_labels_from = 'teacher+scratch' needs the scratch "
        "student: set distill.train_scratch = true"
    )


def test_a_bad_value_in_the_file_names_the_file_and_key(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[export]\nitem_precision = 'int4'\n")
    message = _error(path)
    assert message.startswith(
        f"{path}: export.item_precision: Input should be 'float32', 'float16' or 'int8'"
    )
