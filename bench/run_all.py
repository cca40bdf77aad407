"""`make bench`: run every available benchmark in order; each writes bench/results/<name>.{json,md}.

The service benchmark (bench/service.py) is imported lazily, so this works before it exists.
Exit status: the first non-zero status of any benchmark (a benchmark's FAIL checks do not fail it).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

# In order: (module, argv for its main()).
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("bench.ml100k", []),
    ("bench.service", []),
]


def available(module: str) -> Callable[[list[str] | None], int] | None:
    """The module's `main(argv) -> int`, or None when the module is not there (yet)."""
    if importlib.util.find_spec(module) is None:
        return None
    return importlib.import_module(module).main


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    status = 0
    for module, args in BENCHMARKS:
        entry = available(module)
        if entry is None:
            print(f"skipping {module}: not present")
            continue
        print(f"== {module} ==")
        code = entry(args)
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
