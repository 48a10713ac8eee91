"""glu-ray report: the capability-fragility report from a sweep, lm-eval outputs or published tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glu_ray.errors import GluRayError, first_line


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write the capability-fragility report (Markdown + HTML + figures)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--experiment", help="MLflow experiment written by a sweep")
    src.add_argument("--published", help="folder of the study's published tables (*_complete_results*.json + CSV)")
    src.add_argument("--lm-eval-results", help="folder of lm-eval --output_path results*.json")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's own default)")
    p.add_argument("--out", required=True, help="folder to write report.md, report.html and figures")
    return p


def run(args: argparse.Namespace) -> int:
    # analysis pulls in pandas/matplotlib: imported here so other subcommands start fast.
    from analysis import from_lm_eval, from_mlflow, read_published, sweep_run_id, write_report
    from analysis.stop_audit import audit_points, audit_summary, summary_text  # lazy, as analysis above

    run_id, notes = None, ()
    if args.experiment:
        _check_store(args.tracking_uri)
        try:
            df = from_mlflow(args.experiment, args.tracking_uri)
            run_id = sweep_run_id(args.experiment, args.tracking_uri)
        except GluRayError:
            raise
        except Exception as err:  # noqa: BLE001 - a bad URI or an unreadable store, said on one line
            raise GluRayError(f"cannot read MLflow experiment {args.experiment!r} at {args.tracking_uri or 'the default store'}: "
                              f"{first_line(err)}") from None
    elif args.published:
        published = read_published(args.published)
        df, notes = published.frame, published.notes
        for note in notes:
            print(f"glu-ray report: warning: {note}", file=sys.stderr)
    else:
        df = from_lm_eval(args.lm_eval_results)
    path = write_report(df, args.out, mlflow_run_id=run_id, tracking_uri=args.tracking_uri, notes=notes)
    points = audit_points(df)
    print(summary_text(audit_summary(points), points))
    print(f"wrote {path} and {path.with_suffix('.html')}" + (f"; logged to run {run_id}" if run_id else ""))
    return 0


def _check_store(uri: str | None) -> None:
    """A SQLite store must exist: MLflow would silently create an empty one at a mistyped path."""
    if uri and uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).expanduser().is_file():
        raise GluRayError(f"no MLflow store at {uri[len('sqlite:///'):]} (check --tracking-uri)")


