"""`python -m surgery` runs the CLI (the console script's re-exec comes here too)."""

from surgery.launch import run_program

run_program()
