"""What a failure means to the person who ran the command: the bases every module's own error derives from.

The CLI (recdistill/cli.py) answers by these bases, never by class names, so a new error is handled
by saying what it is where it is raised:
  UserError     bad input the user can fix (a file, a row, a config key, a setting): one line, exit 2
  NotPublished  a check failed before anything was published (ONNX parity, the ANN index's recall,
                the publish step itself); LATEST and every version are untouched: one line, exit 1
  GatesFailed   a publish gate refused the version (a NotPublished): one line per failed gate, exit 3
Each subclass keeps the builtin base it always had (ValueError, RuntimeError), so code that catches
those keeps working; these bases add the meaning.
"""

from __future__ import annotations

from collections.abc import Sequence


class UserError(Exception):
    """Bad input the user can fix; the message names the file, row, column, key or variable."""


class NotPublished(Exception):
    """A checked failure: nothing was published, LATEST and every published version are untouched."""


class GatesFailed(NotPublished):
    """A publish gate refused the version. `lines`: one line per failed gate, each saying why."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)
