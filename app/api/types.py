"""JSON field types that mean exactly what the generated OpenAPI schema says.

pydantic's lax mode accepts more than the schema it documents (`false` as a number, "3" as an int,
epoch seconds where the schema says a date-time string); a client reading the schema could not know.
These types accept what JSON Schema allows and nothing more:
- `JsonInt`: a JSON integer, including a whole-valued number such as 48.0 (JSON Schema counts it as
  an integer); never a boolean, a string or 0.5.
- `JsonFloat`: a finite JSON number (an integer is a number); never a boolean or a string.
- `DateTime`: an RFC 3339 date-time string with its offset (`format: date-time`).
- `EpochSeconds`: a number of seconds since 1970 (0 up to the end of year 9999).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict

# RFC 3339 section 5.6 (what JSON Schema's `format: date-time` means): the offset is required.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime can hold


def _whole_number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time with its offset, e.g. 2026-12-01T09:30:00Z")
    return value


JsonInt = Annotated[int, BeforeValidator(_whole_number), Strict()]
JsonFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
DateTime = Annotated[datetime, BeforeValidator(_rfc3339)]
EpochSeconds = Annotated[float, Strict(), Field(ge=0, le=MAX_EPOCH_SECONDS, allow_inf_nan=False)]
# In a query string every value is text: the number is parsed from it (still finite and in range).
EpochSecondsQuery = Annotated[float, Field(ge=0, le=MAX_EPOCH_SECONDS, allow_inf_nan=False)]


def epoch_seconds(value: datetime | float) -> float:
    """Seconds since 1970 from either form; a date-time without an offset never gets here."""
    return value.timestamp() if isinstance(value, datetime) else float(value)
