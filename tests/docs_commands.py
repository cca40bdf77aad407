"""What a command in the docs is checked against, without running it (tests/docs_checker.py finds them).

- `recdistill ...`: parsed by the real parser (recdistill.cli.build_parser); its `--config` file must
  exist and its `--set` overrides load through the config schema (training.config.load_config);
- `python -m M ...` / `python scripts/S.py ...`: the module or file exists in this repository, and its
  arguments parse with its own argparse arguments, replayed from its source (running it would start
  the job); its `--config` and `--set` are checked as the pipeline's;
- `make T`: T is a target of the Makefile;
- `curl ...`: the route exists for that method in the real app (built, never started) and a `-d`
  body is JSON;
- `RECDISTILL_*=value` before a command, or on lines of their own: settings of the service
  (app.config) with values it accepts.

A program none of these covers is an error, unless UNCHECKED_PROGRAMS names it with the reason.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import io
import json
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

ROOT = Path(__file__).resolve().parents[1]

# Programs a bash block may use that cannot be checked here, each with the reason.
UNCHECKED_PROGRAMS = {
    "docker": "needs a container engine; `make docker-test` and tests/test_dockerfile.py check the image",
    "st": "schemathesis against a running server; tests/app/api/test_openapi_contract.py runs the contract",
}
PLACEHOLDER = "placeholder-value-0"  # stands for `<version>` and the like: a plausible id, 16+ characters
SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", "2>", "&>"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _fill_placeholders(text: str) -> str:
    return re.sub(r"<\w[\w .+-]*>", PLACEHOLDER, text)


def shell_commands(command: str) -> list[list[str]]:
    """A shell line as its simple commands (split at &&, ;, |), redirections dropped; placeholders such
    as `<version>` filled in. ValueError on an unclosed quote."""
    lexer = shlex.shlex(_fill_placeholders(command), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    tokens = iter(lexer)
    for token in tokens:
        if token in SEPARATORS:
            commands.append([])
        elif token in REDIRECTS:
            next(tokens, None)
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _parse(
    parser: argparse.ArgumentParser, args: list[str], mention: bool = False
) -> tuple[argparse.Namespace | None, str]:
    """argparse's own verdict: the namespace, or its error line. A `mention` (a command named in prose,
    "`recdistill events export` reads ...") may leave out required arguments, nothing else."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(args), ""
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        line = lines[-1] if lines else "does not parse"
        return None, "" if mention and "arguments are required" in line else line


def replayed_parser(source: Path, prog: str) -> argparse.ArgumentParser | None:
    """A parser with the `add_argument` calls of a script's source, in source order, with the literal
    options that decide what parses (action, nargs, choices, required, dest; int and float types)."""
    tree = ast.parse(source.read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
    ]
    if not calls:
        return None
    parser = argparse.ArgumentParser(prog=prog)
    for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
        names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        options: dict[str, object] = {}
        for kw in call.keywords:
            if kw.arg in ("action", "nargs", "choices", "required", "dest"):
                with contextlib.suppress(ValueError):
                    options[kw.arg] = ast.literal_eval(kw.value)
            elif kw.arg == "type" and isinstance(kw.value, ast.Name) and kw.value.id in ("int", "float"):
                options["type"] = {"int": int, "float": float}[kw.value.id]
        parser.add_argument(*names, **options)  # type: ignore[arg-type]
    return parser


def module_source(module: str) -> Path | None:
    """The file whose `add_argument` calls make `python -m module`'s command line: the module itself,
    or for a package the module its `__main__.py` imports `main` from (e.g. bench/quality/run.py)."""
    path = ROOT / module.replace(".", "/")
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    main = path / "__main__.py"
    if not main.is_file():
        return None
    for node in ast.walk(ast.parse(main.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and any(a.name == "main" for a in node.names):
            target = ROOT / (node.module.replace(".", "/") + ".py")
            if target.is_file():
                return target
    return main


@functools.cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M))


@functools.cache
def _app():  # noqa: ANN202 - FastAPI, imported only when a route is checked
    from app.config import Settings
    from app.main import create_app

    return create_app(Settings(admin_token="x" * 16))  # routes only: the lifespan (model loading) never runs


def route_exists(method: str | None, path: str) -> bool:
    from starlette.routing import Match

    concrete = re.sub(r"\{[^}]*\}", "x", path.rstrip("/") or "/")
    scope = {"type": "http", "method": method or "GET", "path": concrete, "root_path": ""}
    scope |= {"query_string": b"", "headers": []}
    for route in _app().router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL or (method is None and match == Match.PARTIAL):
            return True
    return False


def config_errors(config: str | None, overrides: list[str]) -> str | None:
    from training.config import ConfigError
    from training.config_file import load_config

    if config is not None and not (ROOT / config).is_file():
        return f"--config {config}: no such file"
    try:
        load_config(ROOT / config if config else None, overrides)
    except ConfigError as exc:
        return str(exc)
    return None


def config_key_exists(key: str) -> bool:
    from training.config import PipelineConfig

    model: type[BaseModel] | None = PipelineConfig
    for part in key.split("."):
        if model is None:
            return True  # under a dict-valued key (event_weights, factory_args): any name
        info = model.model_fields.get(part)
        if info is None:
            return False
        annotation = info.annotation
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_model else None  # type: ignore[assignment]
    return True


def unknown_settings(names: list[str]) -> list[str]:
    """The `RECDISTILL_*` names that are no setting of the service, each with the closest one."""
    from app.config import unknown_variables

    return unknown_variables(dict.fromkeys(names, ""))


def settings_errors(assignments: dict[str, str]) -> list[str]:
    """Unknown `RECDISTILL_*` names, else the values the service would refuse (read as it reads them)."""
    from app.config import Settings, settings_error_line

    if not assignments or (errors := unknown_settings(list(assignments))):
        return errors if assignments else []
    values = {k.removeprefix("RECDISTILL_").lower(): v for k, v in assignments.items()}
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("RECDISTILL_")}
    try:
        Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        return [settings_error_line(exc)]
    finally:
        os.environ.update(saved)
    return []


# --- commands -----------------------------------------------------------------------------------------


def _recdistill(args: list[str], mention: bool = False) -> list[str]:
    from recdistill.cli import build_parser

    ns, error = _parse(build_parser(), args, mention)
    if ns is None:
        return [f"recdistill {' '.join(args)}: {error}"] if error else []
    if hasattr(ns, "set") and (problem := config_errors(getattr(ns, "config", None), ns.set)):
        return [f"recdistill {' '.join(args[:2])}: {problem}"]
    return []


def _sets_of(ns: argparse.Namespace) -> list[str]:
    return next((v for k, v in vars(ns).items() if k in ("set", "sets", "overrides") and v), [])


def _python(args: list[str], mention: bool = False) -> list[str]:
    if args[:1] == ["-m"] and len(args) > 1:
        module, rest = args[1], args[2:]
        if module == "recdistill":
            return _recdistill(rest, mention)
        source = module_source(module)
        if source is None:
            where = module.replace(".", "/")
            return [f"python -m {module}: no module {where}.py or {where}/__main__.py in this repository"]
    elif args and args[0].endswith(".py"):
        source, rest = ROOT / args[0], args[1:]
        if not source.is_file():
            return [f"python {args[0]}: no such file"]
    else:
        return [f"python {' '.join(args)}: expected `-m module` or a script"]
    parser = replayed_parser(source, f"python {' '.join(args[: len(args) - len(rest)])}")
    if parser is None:
        return [] if not rest else [f"{source.relative_to(ROOT)} takes no arguments, given {rest}"]
    ns, error = _parse(parser, rest, mention)
    if ns is None:
        return [f"python {' '.join(args)}: {error}"] if error else []
    config = getattr(ns, "config", None)
    problem = config_errors(str(config) if config else None, _sets_of(ns)) if _sets_of(ns) else None
    return [f"python {' '.join(args[:2])}: {problem}"] if problem else []


def _make(args: list[str], mention: bool = False) -> list[str]:
    targets = [a for a in args if not ENV_ASSIGNMENT.match(a) and not a.startswith("-")]
    return [f"make {t}: no such target in the Makefile" for t in targets if t not in make_targets()]


def _curl(args: list[str], mention: bool = False) -> list[str]:
    method, body, urls = None, None, []
    words = iter(args)
    for word in words:
        if word in ("-X", "--request"):
            method = next(words, "")
        elif word in ("-d", "--data", "--data-raw", "--json"):
            body = next(words, "")
        elif word in ("-H", "--header", "-o", "--output"):
            next(words, None)
        elif not word.startswith("-"):
            urls.append(word)
    if len(urls) != 1:
        return [f"curl: expected one URL, got {urls}"]
    method = method or ("POST" if body is not None else "GET")
    errors = []
    path = urlsplit(urls[0] if "://" in urls[0] else "http://" + urls[0]).path
    if not route_exists(method, path):
        errors.append(f"curl: no route {method} {path}")
    if body is not None:
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            errors.append(f"curl {method} {path}: the body is not JSON ({exc})")
    return errors


def check_command(words: list[str], mention: bool = False) -> list[str]:
    """One simple command (environment assignments first, as the shell takes them); a `mention` is one
    named in prose, which may leave out its required arguments."""
    assignments = {}
    while words and ENV_ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        assignments[name] = value
    errors = settings_errors({k: v for k, v in assignments.items() if k.startswith("RECDISTILL_")})
    if words[:1] == ["time"]:
        words = words[1:]
    if not words:
        return errors
    program, args = Path(words[0]).name, words[1:]
    checkers = {
        "recdistill": _recdistill,
        "python": _python,
        "python3": _python,
        "make": _make,
        "curl": _curl,
    }
    if program in checkers:
        return errors + checkers[program](args, mention)
    if program in UNCHECKED_PROGRAMS:
        return errors
    return errors + [f"{program}: not a program the docs check (add it to UNCHECKED_PROGRAMS with a reason)"]
