"""report.md + report.html (+ figures) from a tidy table; optionally logged to a sweep's parent run.

``write_report(df, out_dir)`` is what the sweep calls at its end and what ``glu-ray report`` runs.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from analysis import controls, plots, recovery
from analysis.findings import Analysis, analyse, delta_table
from analysis.fragility import N_BOOT, without
from analysis.stop_audit import AUDIT_INTRO, NOTHING_TO_AUDIT, audit_points, audit_summary
from analysis.pareto import front_summary, measured_axes, pareto
from analysis.tidy import BASELINE, finished
from glu_ray.errors import GluRayError

HIERARCHY_COLUMNS = ["model", "variant", "method", "rank", "tier", "benchmark", "capability",
                     "fragility", "lo", "hi", "paired_items", "break_ratio", "tied_with"]
CAPABILITY_COLUMNS = ["model", "variant", "method", "rank", "tier", "capability", "fragility", "lo", "hi",
                      "benchmarks", "tied_with"]

INTRO = """Retention: 1 = the unpruned model, 0 = chance (accuracies: (score - chance) / (baseline - chance),
or score / baseline when the baseline sits within 0.02 or two stderrs of chance; perplexities:
ln(baseline) / ln(score), the ratio of cross-entropies). Fragility = 1 - mean retention over the
expansion ratios measured (area under the curve / range), with a 95% bootstrap interval. Where every
run of a curve kept its scores item by item (a sweep's trials do), the bootstrap is paired: each
draw resamples the items all its runs share, so what the baseline and a pruned model both got
right cancels out of their difference (paired_items: how many). Else the scores are drawn from
their stderrs, each independently (where a source reported none, an accuracy over a known number of
items gets the binomial sqrt(p(1-p)/n), marked "binomial" under Standard errors; others get a
zero-width interval). Break =
the widest ratio with retention below 0.5. Benchmarks share a tier when their interval overlaps the
tier head's. A benchmark whose baseline is not above chance by 2 stderrs (and 0.02) measures nothing
pruning can take away: it is left out of the hierarchies, and listed with its numbers."""

SEPARATION_INTRO = """Per model and method: the most and the least fragile capability with their 95% intervals,
among those measured with one (a perplexity without a stderr has an interval of no width: its noise
is unmeasured, not zero, so it is no end; no_interval names it); separated = the two intervals do
not overlap. difference = most - least fragility, with its own 95% interval from the same
bootstrap draws: an interval above 0 says the ends differ (at 5%, though
picking the ends by their estimates first makes that a little easier than a test chosen beforehand).
items_factor = how many times the items per benchmark the two intervals would need to be apart, were
the estimates to hold (intervals narrow as 1 / sqrt(items)): above 1, more items than these runs
scored; below 1, they are apart with room to spare."""
UNFINISHED_INTRO = """A run that failed or was cut off while running (a sweep interrupted: rerun it to finish them)
scored only its first stages. Counted, it would end some curves at a width the others never reach,
so every table and figure here reads finished runs only (completed, or stopped as catastrophic)."""
PARETO_INTRO = """Each trial's retention, averaged over its benchmarks (95% interval from the scores' stderrs),
against what it costs to run: parameters kept, and, from the trial's efficiency stage
(--measure-efficiency, on its own device), decode tokens/s at batch 1 with generation forced to a
fixed length and energy per generated token. A configuration is on an axis's front when no other of
its model and method keeps as much retention for less. A cost the device does not expose
(energy without an NVML or RAPL counter) is left empty, never zero."""
CONTROLS_INTRO = """Each metric's completed runs against random pruning (the control), per benchmark in the
hierarchy (one left out at chance says nothing here either): at the same width (random's mean over
its runs there), and at the same stage-0 word perplexity (each random seed's score interpolated in
log perplexity between its own measured widths, since seeds reach other perplexities at one width,
then averaged over the seeds whose range holds the run's perplexity: seeds_same_ppl in
versus_random.csv; no extrapolation, so a run outside every seed's range has no equal-perplexity
point). Advantage > 0: better than random (higher accuracy, lower perplexity). A metric can beat random at equal width only because it prunes more gently:
the equal-perplexity column says whether it keeps more capability for the same language-modelling
loss. Each advantage has a stderr: where the run and random's runs kept their scores item by item,
from the item-by-item differences on the items they share (paired: the items both answer alike
cancel out); else from the scores' stderrs as independent; where two or more random seeds are
averaged, the stderr of their mean adds in quadrature (random is itself a draw; with one seed that
spread is unknown and the stderr counts items only). strongest_z: the width whose advantage
is the most stderrs from zero, signed (|z| > 2: beyond noise at that width; across many widths and
benchmarks a few such are expected by chance). Every run is in versus_random.csv."""
PARETO_COLUMNS = ["model", "variant", "method", "ratio", "pruning_pct", "retention", "lo", "hi", "benchmarks",
                  "decode_tok_s", "params", "energy_j_per_tok", "front"]


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.3g}"
    return str(value)


def markdown_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(_fmt(v).replace("|", "/") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def stderr_sources(df: pd.DataFrame) -> pd.DataFrame:
    """Where each benchmark's stderrs come from: reported by the source, binomial, or none."""
    given = df["stderr_source"] if "stderr_source" in df else pd.Series(None, index=df.index, dtype=object)
    source = given.astype(object).fillna(df["stderr"].notna().map({True: "reported", False: "none"}))
    return df.assign(stderr=source).groupby(["benchmark", "stderr"]).size().rename("rows").reset_index()


Content = str | pd.DataFrame | Path | tuple  # prose, a table, a figure, a list of lines


def _sections(a: Analysis, figures: dict[str, Path], audit: tuple[pd.DataFrame, pd.DataFrame],
              df: pd.DataFrame, notes: tuple[str, ...], front: pd.DataFrame,
              unfinished: pd.DataFrame) -> list[tuple[str, Content]]:
    """(heading, content) in report order."""
    out: list[tuple[str, Content]] = [("Capability fragility", INTRO)]
    if notes:
        out.append(("Input notes (values corrected, derived or skipped while loading)", tuple(notes)))
    out += [("Standard errors", stderr_sources(df)),
            ("Hypotheses", a.hypotheses),
            ("Hierarchy by capability (most fragile first)", a.capabilities[CAPABILITY_COLUMNS]),
            ("Most against least fragile capability", SEPARATION_INTRO),
            ("Most against least fragile capability (table)", a.separation),
            ("Hierarchy by benchmark (most fragile first)", a.hierarchy[HIERARCHY_COLUMNS]),
            ("Left out of the hierarchy: baseline not above chance",
             a.left_out if not a.left_out.empty else "None: every baseline is above chance by 2 stderrs."),
            *_unfinished_sections(unfinished),
            ("Retention heatmap", figures["heatmap"]),
            ("Retention curves by capability", figures["curves"])]
    bad = a.shapes[a.shapes["shape"] != "monotone"]
    out.append(("Non-monotonic curves", bad if not bad.empty else "Every curve is monotone within noise."))
    if "base_vs_instruct" in figures:
        out += [("Base vs instruct", figures["base_vs_instruct"]), ("Base vs instruct (table)", a.base_vs_instruct)]
    else:
        out.append(("Base vs instruct", "No size and method was measured in both variants."))
    out.append(("Deltas from baseline (the study's table)", delta_table(a.retention)))
    out.append(("Early-stopping audit", AUDIT_INTRO))
    if audit[0].empty:  # say why, instead of two empty tables
        out.append(("Early-stopping audit: runs", f"Nothing to audit: {NOTHING_TO_AUDIT} (a benchmark is "
                    "informative where the baseline is above chance by 2 stderrs: more items per task, --limit, "
                    "narrow the stderrs)."))
    else:
        out += [("Early-stopping audit: thresholds", audit[1]), ("Early-stopping audit: runs", audit[0])]
    return out + _pareto_sections(front, figures)


def _unfinished_sections(unfinished: pd.DataFrame) -> list[tuple[str, Content]]:
    if unfinished.empty:
        return [("Left out: runs that did not finish", "None: every run completed or was stopped as catastrophic.")]
    return [("Left out: runs that did not finish", UNFINISHED_INTRO),
            ("Left out: runs that did not finish (table)", unfinished)]


def _control_sections(versus: pd.DataFrame) -> list[tuple[str, Content]]:
    if versus.empty:
        return [("Against random pruning", "No completed random-pruning run shares a model and a benchmark with "
                 "another metric's (add random to --metrics).")]
    out = [("Against random pruning", CONTROLS_INTRO)]
    if versus["seeds_same_width"].eq(0).all():  # say why a whole column is empty, lest it read as a fault
        out.append(("Against random pruning: no shared width", "No run shares a width with a random one (with "
                    "--widths auto each metric's widths are placed by its own perplexity), so only the "
                    "equal-perplexity comparison has values."))
    return out + [("Against random pruning: mean advantage per benchmark", controls.summary(versus))]


def _pareto_sections(front: pd.DataFrame, figures: dict[str, Path]) -> list[tuple[str, Content]]:
    if "pareto" not in figures:
        return [("Efficiency: retention vs cost", "No cost was recorded for these runs (a sweep records parameters; "
                 "--measure-efficiency adds speed and energy).")]
    return [("Efficiency: retention vs cost (Pareto)", PARETO_INTRO), ("Pareto fronts", figures["pareto"]),
            ("Configurations on the front", front_summary(front)),
            ("Retention and cost per configuration", front[PARETO_COLUMNS])]


def _markdown(sections) -> str:
    parts = ["# GLU width pruning: capability fragility report"]
    for heading, content in sections:
        parts.append(f"## {heading}")
        if isinstance(content, pd.DataFrame):
            parts.append(markdown_table(content))
        elif isinstance(content, Path):
            parts.append(f"![{heading}]({content.name})")
        elif isinstance(content, tuple):
            parts.append("\n".join(f"- {line}" for line in content))
        else:
            parts.append(content)
    return "\n\n".join(parts) + "\n"


def _html(sections) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>glu-ray report</title><style>"
             "body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>",
             "<h1>GLU width pruning: capability fragility report</h1>"]
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, pd.DataFrame):
            parts.append(content.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3g}"))
        elif isinstance(content, Path):
            parts.append(f"<img src='{html.escape(content.name)}' alt='{html.escape(heading)}'>")
        elif isinstance(content, tuple):
            parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in content) + "</ul>")
        else:
            parts.append(f"<p>{html.escape(content)}</p>")
    return "\n".join(parts + ["</body></html>"]) + "\n"


def write_report(df: pd.DataFrame, out_dir: str | Path, *, mlflow_run_id: str | None = None,
                 tracking_uri: str | None = None, n_boot: int = N_BOOT, seed: int = 0,
                 notes: tuple[str, ...] = ()) -> Path:
    """Analyse the tidy table ``df`` (analysis.load / analysis.mlflow_io), write report.md,
    report.html, figures and CSVs to ``out_dir``, log the folder to ``mlflow_run_id`` when given;
    return the path of report.md. ``notes``: what the loader corrected (analysis.published)."""
    df, unfinished = finished(df)
    if df.empty or not (df["method"] == BASELINE).any():
        raise GluRayError("no results with an unpruned baseline to compare against"
                          + (f" ({len(unfinished)} runs have not finished: rerun the sweep)" if len(unfinished) else ""))
    seeds = df  # the comparison with random follows each of its seeds along its own perplexity curve
    df = controls.pool_replicates(df)  # everywhere else the control's seeds are one point per width, their mean
    all_rows, df = df, recovery.unhealed(df)  # every analysis but recovery reads the models as pruned
    a = analyse(df, n_boot=n_boot, seed=seed)
    if a.hierarchy.empty:
        gone = "; ".join(f"{r.benchmark} {r.why}" for r in a.left_out.itertuples())
        raise GluRayError("no pruned run shares a model and benchmark with a baseline"
                          + (f" above chance (left out: {gone})" if gone else ""))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"heatmap": plots.heatmap(a.retention, a.hierarchy, out / "retention_heatmap.png"),
               "curves": plots.capability_curves(without(a.retention, a.left_out), out / "retention_curves.png")}
    pair = plots.base_vs_instruct(a.base_vs_instruct, out / "base_vs_instruct.png")
    if pair is not None:
        figures["base_vs_instruct"] = pair
    points = audit_points(df)
    summary = audit_summary(points)
    front = pareto(a.retention, n_boot=n_boot, seed=seed)
    if measured_axes(front):
        figures["pareto"] = plots.pareto(front, out / "pareto.png")
    sections = _sections(a, figures, (points, summary), df, tuple(notes), front, unfinished)
    versus = controls.versus_random(without(seeds, a.left_out))
    sections += _control_sections(versus)
    rec = recovery.recovery(all_rows, a, n_boot=n_boot, seed=seed) if recovery.has_healing(all_rows) else None
    if rec is not None:
        sections += recovery.sections(rec)
        recovery.write_csvs(rec, out)
    (out / "report.md").write_text(_markdown(sections))
    (out / "report.html").write_text(_html(sections))
    for name in ("retention", "hierarchy", "capabilities", "shapes", "hypotheses", "left_out"):
        getattr(a, name).drop(columns="items", errors="ignore").to_csv(out / f"{name}.csv", index=False)
    delta_table(a.retention).to_csv(out / "deltas.csv", index=False)
    points.to_csv(out / "stop_audit_runs.csv", index=False)
    summary.to_csv(out / "stop_audit.csv", index=False)
    front.to_csv(out / "pareto.csv", index=False)
    versus.to_csv(out / "versus_random.csv", index=False)
    unfinished.to_csv(out / "unfinished.csv", index=False)
    if mlflow_run_id is not None:
        from analysis.mlflow_io import log_report

        log_report(mlflow_run_id, out, tracking_uri)
    return out / "report.md"
