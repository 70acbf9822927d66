"""`python -m fuzz`: see fuzz.run."""

import sys

from fuzz.run import main

sys.exit(main())
