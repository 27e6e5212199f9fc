"""`python -m trainlab`: the same as the `trainlab` command (sweep workers start this way)."""

import sys

from trainlab.cli import main

sys.exit(main())
