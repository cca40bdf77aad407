"""`python -m recdistill ...`: the same as the `recdistill` console script."""

import sys

from recdistill.cli import main

sys.exit(main())
