"""The closest valid name to a mistyped one, for messages that say what the user probably meant.

Both wings use it: the pipeline config names the nearest key to an unknown one (`teacher.epochz` ->
`teacher.epochs`), the service's settings the nearest variable to an unknown `RECDISTILL_*` name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name most like `name` (case-insensitive), or None when none is close.

    A dotted key whose last part is a valid field of another section is that field (`teacher.top_m`
    -> `distill.top_m`: the key is right, the section wrong). Otherwise difflib's ratio with its own
    0.6 cut-off: close enough for a typo or a dropped separator, far enough that an unrelated word
    gets no suggestion."""
    by_folded = {v.casefold(): v for v in valid}
    folded = name.casefold()
    leaf = folded.rpartition(".")[2]
    moved = [v for v in by_folded if "." in folded and v.rpartition(".")[2] == leaf and v != folded]
    match = difflib.get_close_matches(folded, moved or list(by_folded), n=1, cutoff=0.0 if moved else 0.6)
    return by_folded[match[0]] if match else None


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest valid name, or '' when none is close."""
    match = closest(name, valid)
    return f" (did you mean {match}?)" if match else ""


def model_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key a nested pydantic model accepts: sections and their fields ("teacher",
    "teacher.epochs", ...), so a key typed in the wrong section still finds its right place."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += model_keys(field.annotation, f"{prefix}{name}.")
    return keys
