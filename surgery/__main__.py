"""`python -m surgery` runs the CLI (the console script's re-exec comes here too)."""

from surgery.cli import main
from surgery.launch import finish

finish(main())
