"""The command line's number, size, time and table formats, on hand-made values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recdistill.text import count, mib, score, signed_mib, table, when


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (27_440_000, "26.2 MiB"),  # what `models list` wrote as "MB 27.44" and the dashboard as 26.2 MiB
        (1 << 20, "1.0 MiB"),  # from 1 MiB up: MiB
        ((1 << 20) - 1, "1024.0 KiB"),  # below it: KiB, as the dashboard's rule
        (3584, "3.5 KiB"),
        (0, "0.0 KiB"),
        (None, "-"),
    ],
)
def test_sizes_follow_the_dashboards_rule(n: int | None, text: str) -> None:
    assert mib(n) == text


def test_size_differences_are_signed() -> None:
    assert (signed_mib(200_000), signed_mib(-3 << 20)) == ("+195.3 KiB", "-3.0 MiB")


def test_times_are_utc_to_the_second() -> None:
    assert when("2026-12-07T01:46:39.733443+00:00") == "2026-12-07 01:46:39"  # no microseconds
    assert when("2026-12-07T03:46:39+02:00") == "2026-12-07 01:46:39"  # converted to UTC
    assert when(datetime(2026, 12, 7, 1, 46, 39)) == "2026-12-07 01:46:39"  # no zone: taken as UTC
    assert when(datetime(2026, 12, 7, 1, 46, 39, tzinfo=UTC)) == "2026-12-07 01:46:39"


def test_counts_are_integers_and_scores_have_four_decimals() -> None:
    assert (count(19412.0), count(1500), count(None)) == ("19,412", "1,500", "-")
    assert (score(0.0123456), score(None), score(1.0)) == ("0.0123", "-", "1.0000")


def test_columns_are_as_wide_as_their_widest_cell() -> None:
    rows = [["name", "n"], ["a-much-longer-name", "1"], ["b", "1,234"]]
    assert table(rows, "lr") == [
        "name                    n",
        "a-much-longer-name      1",
        "b                   1,234",
    ]


def test_group_labels_sit_over_their_columns_and_title_rows_stand_alone() -> None:
    rows = [["model", "teacher", "student"], "section", ["x", "0.1", "0.2"]]
    assert table(rows, "lrr", groups=[("ndcg@10", 1, 2)]) == [
        "           ndcg@10",  # centred over columns 7..22: str.center puts the odd space on the right
        "model  teacher  student",
        "section",
        "x          0.1      0.2",
    ]
    # a label wider than its columns widens them
    assert table([["m", "a", "b"], ["x", "1", "2"]], "lrr", groups=[("parameters", 1, 2)]) == [
        "   parameters",
        "m  a        b",
        "x  1        2",
    ]
