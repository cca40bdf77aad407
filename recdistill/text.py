"""How the command line writes numbers, sizes, times and tables, so every command reads alike.

Sizes follow the dashboard's rule (app/ui/static/ui.js `bytes`): MiB from 1 MiB up, KiB below, one
decimal. Times are UTC to the second, as the dashboard shows `created_at`. Counts are integers with
thousands separators; scores have four decimals. A table's columns are as wide as their widest cell,
so a 25-character version name and a 7-character one line up alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

MISSING = "-"
MIB = 1 << 20


def mib(n: float | None) -> str:
    """Bytes the way the dashboard writes them: '26.2 MiB', '3.5 KiB'."""
    if n is None:
        return MISSING
    return f"{n / MIB:.1f} MiB" if abs(n) >= MIB else f"{n / 1024:.1f} KiB"


def signed_mib(n: float) -> str:
    """A size difference: '+1.2 MiB', '-0.5 KiB'."""
    return ("+" if n >= 0 else "-") + mib(abs(n))


def when(stamp: str | datetime) -> str:
    """'2026-12-07 01:46:39' in UTC (a timestamp without a zone is taken as UTC)."""
    moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def count(n: float | None) -> str:
    """A count as an integer: '19,412', never '19412.0000'."""
    return MISSING if n is None else f"{round(n):,}"


def score(x: float | None, digits: int = 4) -> str:
    return MISSING if x is None else f"{x:.{digits}f}"


Row = Sequence[str] | str  # a str is a line of its own (a section title), outside the columns


def table(
    rows: Sequence[Row], align: str, groups: Sequence[tuple[str, int, int]] = (), gap: int = 2
) -> list[str]:
    """Aligned lines: `align` has one letter per column, 'l' or 'r' (numbers right, text left).

    `groups` are (label, first column, last column): a line above the rows with each label centred
    over its columns (widened when the label is longer). Trailing spaces are stripped."""
    cells = [r for r in rows if not isinstance(r, str)]
    widths = [max((len(r[i]) for r in cells), default=0) for i in range(len(align))]
    for label, first, last in groups:
        span = sum(widths[first : last + 1]) + gap * (last - first)
        widths[last] += max(0, len(label) - span)
    starts = [sum(widths[:i]) + gap * i for i in range(len(widths))]
    lines = []
    if groups:
        line = ""
        for label, first, last in groups:
            end = starts[last] + widths[last]
            line = line.ljust(starts[first]) + label.center(end - starts[first])
        lines.append(line.rstrip())
    for r in rows:
        if isinstance(r, str):
            lines.append(r)
            continue
        padded = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align, strict=True)]
        lines.append((" " * gap).join(padded).rstrip())
    return lines
