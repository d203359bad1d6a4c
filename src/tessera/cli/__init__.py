"""The ``tessera`` command line: parse, build a config, call one public function, print.

Exit codes: 0 success, 2 usage errors (bad arguments, invalid values), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tessera.errors import TesseraError, UnsupportedError, ValidationError

__all__ = ["build_parser", "main"]


# One module per area; each has add_parsers(sub) adding its sub-commands.
_AREAS: tuple[str, ...] = (
    "tessera.cli.flows",
    "tessera.cli.inverse",
    "tessera.cli.finetune",
    "tessera.cli.bipartite",
    "tessera.cli.gshm",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tessera`` command.

    Returns:
        An ``argparse.ArgumentParser`` with the sub-commands.
    """
    from tessera import __version__

    p = argparse.ArgumentParser(prog="tessera", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"tessera {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)
    for area in _AREAS:
        importlib.import_module(area).add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tessera`` command.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 2 usage error, 1 other failure.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except (ValidationError, UnsupportedError) as exc:
        print(f"tessera: error: {exc}", file=sys.stderr)
        return 2
    except (TesseraError, ImportError, OSError) as exc:
        print(f"tessera: error: {exc}", file=sys.stderr)
        return 1
