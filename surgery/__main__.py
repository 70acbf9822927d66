"""`python -m surgery` runs the CLI."""

import sys

from surgery.cli import main

sys.exit(main())
