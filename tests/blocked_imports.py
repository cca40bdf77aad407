"""Run Python in a subprocess as if some top-level packages were not installed (torch, training).

A meta-path finder placed first raises ImportError for the blocked names, so `import torch` fails
exactly as it does in the torch-free serving image, whatever this machine has installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PRELUDE = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked in this test (as if it were not installed)")
        return None
sys.meta_path.insert(0, _Blocked())
"""


def run_blocked(
    code: str, blocked: Iterable[str] = ("torch", "training"), env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -c code` from the repository root with `blocked` packages unimportable."""
    program = _PRELUDE.format(blocked=set(blocked)) + code
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


def run_cli_blocked(
    argv: list[str], blocked: Iterable[str] = ("torch", "training"), env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `recdistill` command with `blocked` packages unimportable."""
    code = f"from recdistill.cli import main; sys.exit(main({argv!r}))"
    return run_blocked(code, blocked, env)
