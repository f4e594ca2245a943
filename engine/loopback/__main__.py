"""``python -m engine.loopback ...``: the ``serve-exchange`` verb on its own."""

import argparse
import sys

from engine.loopback.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.loopback")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["serve-exchange", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
