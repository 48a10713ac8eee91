"""`glu-ray` console script: one subcommand per module in glu_ray/cli/.

Each command module exposes ``add_parser(subparsers)`` and ``run(args) -> int``. Errors the user
can fix (GluRayError) print on one line with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable

from glu_ray.errors import GluRayError, first_line

COMMANDS = ("fetch", "prune", "eval", "report", "ui")  # each names glu_ray/cli/<name>.py


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glu-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"glu_ray.cli.{name}")
        module.add_parser(sub).set_defaults(_run=module.run)
    return parser


def guarded(run: Callable[[], int], prefix: str = "", interrupted: str = "interrupted") -> int:
    """The CLI boundary (``glu-ray`` and the sweep scripts): a GluRayError is one line and exit 2,
    Ctrl-C exit 130, anything else one line and exit 1, never a library's traceback."""
    try:
        return run()
    except GluRayError as err:
        print(f"{prefix}error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}{interrupted}", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("GLU_RAY_DEBUG"):
            raise
        print(f"{prefix}error: internal error: {type(err).__name__}: {first_line(err, default='')} "
              "(GLU_RAY_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args._run(args), prefix=f"glu-ray {args.command}: ")


if __name__ == "__main__":
    sys.exit(main())
