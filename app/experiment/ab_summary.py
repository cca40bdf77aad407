"""The A/B verdict in one sentence: the words come from the same always-valid reading as the numbers
they quote (interval, p-value, MDE), so the sentence cannot contradict itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.experiment.ab_stats import RatioDifference
from app.experiment.guardrails import GUARDRAIL_LABELS, SRM_LABEL
from app.experiment.proportions import SampleRatio

METRIC_WORDS = "CTR per user"


def pct(x: float, sign: bool = True) -> str:
    """A fraction as percent with two decimals (every relative figure on the page reads this way)."""
    return f"{x:+.2%}" if sign else f"{x:.2%}"


def _size(d: RatioDifference) -> str:
    if d.lift is not None and d.lift_low is not None and d.lift_high is not None:
        size = f"{pct(d.lift)} relative (always-valid 95% interval {pct(d.lift_low)} to {pct(d.lift_high)})"
    else:
        size = f"{d.diff:+.4g} absolute (always-valid 95% interval {d.low:+.4g} to {d.high:+.4g})"
    return f"{size}, always-valid p = {d.p_value:.3g}"


def _stop_reason(word: str, guards: dict[str, Any], srm: SampleRatio, control: str, treatment: str) -> str:
    label = word.removeprefix("stop: ")
    if label == SRM_LABEL:
        return srm.warning or SRM_LABEL
    name = next(k for k, v in GUARDRAIL_LABELS.items() if v == label)
    test = guards["tests"][name]
    arms = guards["arms"]
    if name == "latency_p99":
        c, t = arms[control]["latency_p99_ms"], arms[treatment]["latency_p99_ms"]
        figures = f"p99 {t:.1f} ms vs {c:.1f} ms"
    else:
        c, t = arms[control][name], arms[treatment][name]
        figures = f"{pct(t, False)} vs {pct(c, False)}"
    return (
        f"{treatment} is significantly worse than {control} on {label} ({figures}; always-valid interval of "
        f"the difference in bad answers {pct(test['low'])} to {pct(test['high'])} points of share)"
    )


def summary(
    word: str,
    d: RatioDifference,
    control: str,
    treatment: str,
    have: tuple[int, int],
    needed: tuple[int, int] | None,
    conclusion: dict[str, Any] | None,
    target_lift: float,
    planned: bool,
    guards: dict[str, Any],
    srm: SampleRatio,
    stopped_at: float | None,
) -> str:
    """The verdict in words; a stopped experiment says so first."""
    stopped = ""
    if stopped_at is not None:
        stopped = f"Stopped {datetime.fromtimestamp(stopped_at, UTC).isoformat(timespec='seconds')}; final reading: "
    users = f"{have[0]:,} {control} + {have[1]:,} {treatment} users"
    if word.startswith("stop: "):
        return f"{stopped}{word} — {_stop_reason(word, guards, srm, control, treatment)}"
    if d.diff is None or d.z is None or d.low is None or d.p_value is None:
        return (
            f"{stopped}not yet: {METRIC_WORDS} needs at least 2 users with impressions and some variation "
            f"in each arm (have {users})"
        )
    head = f"{treatment} vs {control} on {METRIC_WORDS}: {_size(d)}; {users}"
    if word != "not yet":
        return f"{stopped}{treatment} is {word} than {control} — {head}"
    tail = ""
    if d.mde_relative is not None:
        tail += f". The smallest lift detectable now with 80% power is {pct(d.mde_relative, False)}"
    if needed is not None:
        which = "the planned" if planned else "a"
        tail += f"; finding {which} {target_lift:.0%} lift needs about {max(needed):,} users per arm"
        if conclusion is not None and stopped_at is None:
            hours = conclusion["hours_left"]
            tail += (
                " (reached now)" if hours <= 0 else f" (about {hours:,.1f} more hours at the current traffic)"
            )
    return f"{stopped}not yet — {head}{tail}"
