"""The `surgery` command: one entry point, one module per subcommand under `surgery.commands`.

Exit codes: 0 ok, 1 a model/rule/graph error (one line on stderr), 2 usage error, 130
interrupted, 141 the reader of stdout went away (`surgery match ... | head -n 1`): the command
stops quietly, as a tool killed by SIGPIPE would (128 + 13, what the shell reports for one), so
`set -o pipefail` still sees that the output was cut short. Files are written atomically, so a
command stopped that way leaves no partial output.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from surgery.errors import SurgeryError, UsageError

# Each module defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

COMMANDS = [
    "inspect",
    "view",
    "diff",
    "freeze",
    "preprocess",
    "shapes",
    "layout",
    "weights",
    "check",
    "match",
    "explain",
    "apply",
    "test",
    "validate",
    "export",
    "support",
    "build",
    "kernels",
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or, with `only`, just that subcommand's part: running one
    command need not import and build the other seventeen."""
    parser = argparse.ArgumentParser(
        prog="surgery",
        description="Rewrite TensorFlow graphs for TensorRT with declarative rules.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [only] if only in COMMANDS else COMMANDS:
        importlib.import_module(f"surgery.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(words[0] if words else None)
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader gone away shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # some other pipe: a real error
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except SurgeryError as exc:
        print(f"surgery {args.command}: error: {printable(str(exc))}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print(f"surgery {args.command}: interrupted", file=sys.stderr)
        return 130


def _stdout_gone() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone away."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll(), no fileno: assume it was stdout
        return True
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is left at exit raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def printable(text: str) -> str:
    """`text` with every non-printable character escaped (`\x1b`, `\x85`): an error line quotes
    names and tokens from the user's files, which must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


if __name__ == "__main__":
    sys.exit(main())
