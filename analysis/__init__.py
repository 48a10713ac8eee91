"""Capability-fragility analysis of width-pruned models: load results, score, report.

    df = from_published(dir) | from_lm_eval(dir) | from_mlflow(experiment, tracking_uri) | from_sweep(trials, rows)
    published = read_published(dir)  # .frame and .notes (what loading corrected)
    write_report(df, out_dir, mlflow_run_id=sweep_run_id(experiment, uri), tracking_uri=uri)
"""

from analysis.findings import Analysis, analyse, delta_table
from analysis.load import from_lm_eval, from_mlflow
from analysis.published import Published, from_published, read_published
from analysis.mlflow_io import log_report, sweep_run_id
from analysis.report import write_report
from analysis.trials import from_sweep

__all__ = ["Analysis", "Published", "analyse", "delta_table", "from_lm_eval", "from_mlflow", "from_published",
           "from_sweep", "log_report", "read_published", "sweep_run_id", "write_report"]
