"""`python -m bench.quality ...`: the command line of bench/quality/run.py."""

import sys

from bench.quality.run import main

if __name__ == "__main__":
    sys.exit(main())
