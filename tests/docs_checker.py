"""What the README and the guides in docs/ tell a reader, checked against the code without running it.

A guide whose command names a flag, a config key, a module, a make target, a route or a file that
does not exist fails a newcomer in their first minutes, and nothing else in the suite would notice
(a package reorganised, a flag renamed). So every command in a ```bash block is checked as
tests/docs_commands.py says, and in the prose (outside code blocks):

- an inline command (`recdistill ...`, `python -m ...`, `make ...`) is checked the same way, except
  that it may leave out required arguments (it names a command rather than giving one to type);
- an inline `--set key=value` loads through the config schema; an inline `section.key` exists in it;
- every `RECDISTILL_*` name is a setting of the service;
- an inline `METHOD /path`, or a bare `/v1/...`, `/admin/...`, `/health/...`, `/ui/api/...` path, is a
  route of the app;
- an inline repository path (configs/, bench/, scripts/, tests/, app/, training/, core/, recdistill/,
  docs/) exists; models/ holds what the pipeline publishes and is not checked;
- a relative link (or image) resolves, and its #anchor is a heading of the target.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs_commands import (
    ENV_ASSIGNMENT,
    ROOT,
    check_command,
    config_errors,
    config_key_exists,
    route_exists,
    settings_errors,
    shell_commands,
    unknown_settings,
)

SHELL_LANGS = {"bash", "sh", "shell"}
SETTING_NAME = re.compile(r"RECDISTILL_[A-Z][A-Z0-9_]*")
CONFIG_KEY = re.compile(
    r"^((?:data|teacher|student|distill|export|eval|publish)(?:\.[a-z_]+)+)(?<!\.py)(?<!\.md)\s*(?:=.*)?$"
)
ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/[^\s\[?]*)")
BARE_ROUTE = re.compile(r"^/(?:v1|admin|health|ui/api)/[^\s\[?]*")
REPO_PATH = re.compile(r"^(?:configs|bench|scripts|tests|app|training|core|recdistill|docs)/[\w./-]*$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](image)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
INLINE_COMMAND = re.compile(r"^(?:recdistill|python -m|make) ")


def _open_quote(line: str) -> bool:
    try:
        shlex.split(line, comments=True)
    except ValueError:
        return True
    return False


@dataclass
class Doc:
    """One Markdown file split into its shell commands (line, command, block) and its prose (the lines
    outside code blocks; those inside are blank, so line numbers hold)."""

    path: Path
    commands: list[tuple[int, str, int]] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, path: Path, text: str) -> Doc:
        doc, fence, pending, start, block = cls(path), None, "", 0, 0
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                if pending.strip():  # the block ended inside a quote or after a `\`: checked, so it fails
                    doc.commands.append((start, pending.strip(), block))
                fence, pending, start = (stripped[3:].strip() if fence is None else None), "", 0
                block = number
                doc.prose.append("")
                continue
            doc.prose.append(line if fence is None else "")
            if fence not in SHELL_LANGS:
                continue
            start = start or number
            if stripped.endswith("\\"):  # a continuation: the command goes on on the next line
                pending += stripped[:-1] + " "
                continue
            joined, pending = (pending + stripped).strip(), ""
            if _open_quote(joined):  # a quoted argument (a JSON body) goes on on the next line
                pending = joined + " "
                continue
            if joined and not joined.startswith("#"):
                doc.commands.append((start, joined, block))
            start = 0
        return doc

    def where(self, line: int) -> str:
        try:
            return f"{self.path.relative_to(ROOT)}:{line}"
        except ValueError:
            return f"{self.path}:{line}"

    def inline_code(self) -> Iterator[tuple[int, str]]:
        for number, line in enumerate(self.prose, 1):
            for match in INLINE_CODE.finditer(line):
                yield number, match.group(1).strip()


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings outside code blocks: lower case, punctuation dropped, spaces to -."""
    anchors: set[str] = set()
    for line in Doc.parse(Path("-"), text).prose:
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).replace("`", "").lower()).replace(" ", "-")
            anchors.add(slug if slug not in anchors else f"{slug}-1")
    return anchors


def _link_errors(doc: Doc, text: str) -> list[str]:
    errors = []
    for number, line in enumerate(doc.prose, 1):
        for match in LINK.finditer(line):
            target = match.group(1)
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (doc.path.parent / file_part).resolve()
            if file_part and not resolved.exists():
                errors.append(f"{doc.where(number)}: link {target}: no such file")
                continue
            checkable = anchor and (not file_part or resolved.suffix == ".md")
            if checkable and anchor not in heading_anchors(resolved.read_text() if file_part else text):
                errors.append(f"{doc.where(number)}: link {target}: no heading #{anchor} there")
    return errors


def _inline_errors(span: str) -> list[str]:
    """What is wrong with one inline code span of the prose (most spans are none of these things)."""
    if INLINE_COMMAND.match(span):
        if "…" in span or "..." in span or " [" in span:
            return []  # a shape ("recdistill models ... --models DIR"), not a command to type
        try:
            return [e for words in shell_commands(span) for e in check_command(words, mention=True)]
        except ValueError as exc:  # an unclosed quote
            return [f"`{span}`: {exc}"]
    if span.startswith("--set "):
        overrides = [w for w in shlex.split(span)[1:] if w != "--set"]
        problem = config_errors(None, overrides)
        return [f"`{span}`: {problem}"] if problem else []
    if (key := CONFIG_KEY.match(span)) and not config_key_exists(key.group(1)):
        return [f"`{span}`: no config key {key.group(1)}"]
    if route := ROUTE.match(span):
        method, path = route.groups()
        if "..." not in path and not route_exists(method, path):
            return [f"`{span}`: no route {method} {path}"]
    elif (bare := BARE_ROUTE.match(span)) and "..." not in span and not route_exists(None, bare.group(0)):
        return [f"`{span}`: no route {bare.group(0)}"]
    if REPO_PATH.match(span) and not (ROOT / span).exists():
        return [f"`{span}`: no such file in the repository"]
    return []


def check_markdown(path: Path, text: str) -> list[str]:
    """Every problem in one Markdown file, each as `file:line: what`."""
    doc = Doc.parse(path, text)
    errors = []
    environments: dict[int, tuple[int, dict[str, str]]] = {}  # block -> first line, its assignment lines
    for number, command, block in doc.commands:
        if "…" in command:
            errors.append(f"{doc.where(number)}: `…` in a bash block: write a command that runs")
            continue
        try:
            simple = shell_commands(command)
        except ValueError as exc:  # an unclosed quote
            errors.append(f"{doc.where(number)}: {command}: {exc}")
            continue
        for words in simple:
            if all(ENV_ASSIGNMENT.match(w) for w in words):  # an environment, told line by line
                env = environments.setdefault(block, (number, {}))[1]
                env |= dict(w.partition("=")[::2] for w in words)
            else:
                errors += [f"{doc.where(number)}: {e}" for e in check_command(words)]
    for number, env in environments.values():
        settings = {k: v for k, v in env.items() if k.startswith("RECDISTILL_")}
        errors += [f"{doc.where(number)}: {e}" for e in settings_errors(settings)]
    for number, span in doc.inline_code():
        errors += [f"{doc.where(number)}: {e}" for e in _inline_errors(span)]
    for number, line in enumerate(text.splitlines(), 1):
        errors += [f"{doc.where(number)}: {e}" for e in unknown_settings(SETTING_NAME.findall(line))]
    return list(dict.fromkeys(errors + _link_errors(doc, text)))  # a name both in a command and its line once


def documented_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
