"""Command-line interface: each subcommand maps its flags onto one call of :mod:`geopurify.workflows`.

``geopurify --help`` lists the commands. Each module of this package named in :data:`COMMANDS` adds its
subcommands with ``add_commands(sub)``; what they share (reading a scan, building encoders, the flags for
them) is in :mod:`._common`. Flags that set a config field are built from the config dataclasses
(:mod:`geopurify._argparse`), so defaults live there. Problems with the input print one line
(``geopurify: error: <file>: <problem>``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ..errors import GeopurifyError

#: modules of this package that add subcommands, in the order ``--help`` lists them
COMMANDS = ["pipeline", "query", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geopurify", description="Open-vocabulary 3D semantic segmentation of "
                                     "indoor scans (GeoPurify): lift 2D features, purify them with geometry, query.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except GeopurifyError as exc:
        if args.verbose:
            raise
        print(f"geopurify: error: {exc}", file=sys.stderr)
        return 2

