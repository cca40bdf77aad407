"""A pipeline config read from its TOML file, then `--set key=value` overrides applied, type-checked.

Every error is one ConfigError naming where the value came from (the file, or the `--set` that set
it) and its full dotted key; an unknown key also names the closest valid one.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.names import did_you_mean, model_keys
from training.config import ConfigError, PipelineConfig


def _parse_value(raw: str) -> Any:
    """`--set` values are TOML/JSON scalars or lists when they parse as such, else plain strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def _format_validation(err: ValidationError, path: Path | None, set_keys: list[str]) -> str:
    """One clause per error naming where the value came from (the file, or the `--set` that set it)
    and its full dotted key; an unknown key also names the closest valid one."""
    clauses = []
    for e in err.errors(include_url=False):
        key, unknown = ".".join(str(p) for p in e["loc"]), e["type"] == "extra_forbidden"
        under = [k for k in set_keys if k.startswith(key + ".")]  # a section's check, a set key under it
        setter = next((k for k in set_keys if k == key or key.startswith(k + ".")), None)
        setter = setter or (under[0] if unknown and under else None)  # --set a.b.c where a.b is unknown
        where = f"--set {setter}" if setter else str(path or "defaults") + (" and --set" if under else "")
        where += "" if setter == key or not key else f": {key}"
        why = f"unknown key{did_you_mean(key, model_keys(PipelineConfig))}" if unknown else str(e["msg"])
        clauses.append(f"{where}: {why.removeprefix('Value error, ')}")
    return "; ".join(clauses)


def load_config(path: Path | None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a TOML config (or the defaults when path is None) and apply `key=value` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such config file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    set_keys = []
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        set_keys.append(key.strip())
        _set_path(tree, key.strip(), _parse_value(raw.strip()))
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, path, set_keys)) from exc
