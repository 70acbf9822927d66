"""`python -m surgery.models [NAME ...]`: build (or find cached) fixtures and print their facts."""

from __future__ import annotations

import argparse
import sys

from surgery.errors import SurgeryError
from surgery.models import FIXTURES, TEST_FIXTURES, build, fixture_info


def main(argv: list[str] | None = None) -> int:
    """Print path, node count, size and inputs/outputs of each requested fixture."""
    parser = argparse.ArgumentParser(prog="python -m surgery.models", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"fixtures (known: {', '.join(FIXTURES)})")
    parser.add_argument("--cache-dir", help="cache directory (default: <repo>/.fixture_cache)")
    parser.add_argument("--rebuild", action="store_true", help="build even if cached")
    args = parser.parse_args(argv)
    try:
        for name in args.names or TEST_FIXTURES:
            make = build if args.rebuild else fixture_info
            info = make(name, args.cache_dir)
            inputs = ", ".join(f"{s.name}{list(s.shape or [])}:{s.dtype}" for s in info.inputs)
            print(
                f"{name}: {info.nodes} nodes, {info.size} bytes, built in {info.build_seconds} s"
                f"\n  {info.path}\n  inputs {inputs}\n  outputs {', '.join(info.outputs)}"
            )
    except SurgeryError as exc:
        print(f"surgery.models: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
