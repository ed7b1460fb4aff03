"""``python -m diagnosis``: the command line."""

import sys

from diagnosis.cli import main

sys.exit(main())
