"""`glu-ray` console script: one subcommand per module in glu_ray/cli/.

Each command module exposes ``add_parser(subparsers)`` and ``run(args) -> int``. Errors the user
can fix (GluRayError) print on one line with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from glu_ray.errors import GluRayError

COMMANDS = ("fetch", "prune", "eval", "report", "ui")  # each names glu_ray/cli/<name>.py


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glu-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"glu_ray.cli.{name}")
        module.add_parser(sub).set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except GluRayError as err:
        print(f"glu-ray {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"glu-ray {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - never a library's traceback; GLU_RAY_DEBUG=1 shows it
        if os.environ.get("GLU_RAY_DEBUG"):
            raise
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
        print(f"glu-ray {args.command}: error: internal error: {type(err).__name__}: {lines[0][:300] if lines else ''} "
              "(GLU_RAY_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
