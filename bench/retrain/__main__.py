"""`python -m bench.retrain ...`: the command line of bench/retrain/run.py."""

import sys

from bench.retrain.run import main

if __name__ == "__main__":
    sys.exit(main())
