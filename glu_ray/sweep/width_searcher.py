"""The Tune side of --widths auto: a Searcher that proposes stage-0 probes from reported results.

One ``Bisection`` (width_search.py) per (model, metric), all searched in one Tune experiment: each
search has at most one probe in flight (its next probe depends on the last one), so searches run
side by side and each one's sequence of probes depends only on its own results: the same widths
whatever order Tune finishes trials in. A probe is the pruned trial itself at the probed width,
ended after stage 0 (as a reference run is: driver._measure_references).

Probes already in the ledger (a previous run's, or a finished trial's own stage 0 at that width)
are fed from it, never rerun: ``replay`` plays them before Tune starts, and when that settles
every search no experiment runs at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ray.tune.search import Searcher

from glu_ray.pruning.widths import Width
from glu_ray.sweep.grid import SweepGrid, pruned_at, seeds_for
from glu_ray.sweep.plan import _finite
from glu_ray.sweep.width_search import Bisection, Found, WidthSearch
from glu_ray.trials.config import TrialConfig, WidthChoice
from glu_ray.trials.ledger import CHOICE, Event, Ledger
from glu_ray.vocab import (PPL_WORD, TRIAL_KEY, WIDTH, WIDTH_SEARCH_RATIO, WIDTH_SEARCH_STEPS, WIDTH_TARGET_RATIO,
                           TrialStatus)

log = logging.getLogger("glu_ray")


@dataclass
class Search:
    template: TrialConfig  # the pruned trial of this (model, metric), at some width
    baseline_ppl: float
    bisection: Bisection

    def at(self, width: int) -> TrialConfig:
        w = self.template.width
        return replace(self.template, width=Width(width, w.intermediate, w.hidden))

    def probe(self, width: int) -> TrialConfig:
        """The stage-0 probe at ``width``: keyed as the full trial there, whatever stages the trial
        itself runs (--stage0-only), since stage 0 is the same; so a probe serves both settings."""
        cfg = self.at(width)
        return replace(cfg, eval=replace(cfg.eval, stage0_only=False))


def searches_for(templates: Sequence[TrialConfig], spec: WidthSearch) -> list[Search]:
    """One search per template (its baseline_ppl must be set: the ratio is over it)."""
    out = []
    for cfg in templates:
        w = cfg.width
        bis = Bisection(w.intermediate, spec.narrowest(w.intermediate, w.hidden), spec.targets, spec.max_steps)
        out.append(Search(cfg, cfg.baseline_ppl, bis))
    return out


class WidthSearcher(Searcher):
    def __init__(self, searches: Sequence[Search], measured: Mapping[str, dict]):
        super().__init__(metric=PPL_WORD, mode="min")
        self.searches = list(searches)
        self.measured = measured  # trial key -> stage-0 data already in the ledger
        self.pending: dict[str, tuple[int, int]] = {}  # Tune trial id -> (search index, width)

    @property
    def done(self) -> bool:
        return all(s.bisection.done for s in self.searches)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the searches are fixed at construction; Tune's param space is empty

    def replay(self) -> None:
        """Play every probe the ledger already holds, so only new widths become trials."""
        for i in range(len(self.searches)):
            self._next(i)

    def _next(self, i: int) -> int | None:
        """Search i's next probe not yet measured, feeding it the ledger's measurements on the way."""
        s = self.searches[i]
        while (width := s.bisection.next_width()) is not None:
            row = self.measured.get(s.probe(width).key)
            if row is None or PPL_WORD not in row:
                return width
            s.bisection.record(width, float(row[PPL_WORD]) / s.baseline_ppl)
        return None

    def suggest(self, trial_id: str):
        busy = {i for i, _ in self.pending.values()}
        for i, s in enumerate(self.searches):
            if i in busy:
                continue
            width = self._next(i)
            if width is not None:
                self.pending[trial_id] = (i, width)
                return {"trial": s.probe(width).to_dict()}
        return Searcher.FINISHED if not self.pending else None  # None: wait for a probe in flight

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        i, width = self.pending.pop(trial_id)
        bis = self.searches[i].bisection
        if error or not result or PPL_WORD not in result:
            bis.fail(f"the stage-0 probe at width {width} failed")
            return
        bis.record(width, float(result[PPL_WORD]) / self.searches[i].baseline_ppl)


def find_widths(grid: SweepGrid, baselines: Sequence[TrialConfig], ledger: Ledger, run_probes, verbose: int = 1):
    """(pruned trials at the widths found, every search settled, the search's record for MLflow).

    ``run_probes(searcher, max_trials)`` runs the Tune experiment of stage-0 probes, each probe's
    stage 0 into the ledger (kind SEARCH). The ledger is the source of truth: the searches are
    replayed from it afterwards (and before, so a rerun runs only what is missing)."""
    measured = ledger.stage0()
    templates = []
    for base in baselines:
        ppl = _finite(measured.get(base.key, {}).get(PPL_WORD))
        if not ppl:
            log.warning("--widths auto: %s has no finite baseline stage 0; its widths are not searched", base.name)
            continue
        templates += [replace(pruned_at(grid, base, m, base.width.width - 1), baseline_ppl=ppl, artifact_dir=None)
                      for m in grid.metrics]  # no artifact folder: a probe must not clobber the full trial's

    def replayed() -> WidthSearcher:
        searcher = WidthSearcher(searches_for(templates, grid.widths), {**ledger.stage0(), **ledger.searched()})
        searcher.replay()
        return searcher

    searcher = replayed()
    if not searcher.done:
        run_probes(searcher, sum(len(s.bisection.targets) * s.bisection.max_steps + 1 for s in searcher.searches))
        searcher = replayed()
    # The random control runs at each width found with every --control-seeds seed (placed by the first's curve).
    pruned = [replace(c, seed=seed) for c in _chosen(searcher.searches, ledger, verbose) for seed in seeds_for(grid, c.metric)]
    return pruned, searcher.done, [_record(s) for s in searcher.searches]


def _chosen(searches: Sequence[Search], ledger: Ledger, verbose: int) -> list[TrialConfig]:
    """One trial per (model, metric, width found), in search order (narrowest pruning first);
    each target's choice into the ledger once."""
    recorded = {(c[TRIAL_KEY], c[WIDTH_TARGET_RATIO]) for c in ledger.choices()}
    out, seen = [], set()
    for s in searches:
        for f in s.bisection.found:
            key = s.at(f.width or s.bisection.narrowest).key
            if (key, f.target) not in recorded:
                ledger.append(Event(key, CHOICE, None, TrialStatus.COMPLETED, {TRIAL_KEY: key, **_choice(f)}))
            if f.width is None:
                log.warning("--widths auto: %s never reaches %gx its baseline's stage-0 perplexity within %.1f%% pruned "
                            "(%.3gx there): unreachable", s.template.method, f.target, _narrowest_pct(s), f.ratio)
                continue
            cfg = replace(s.at(f.width), baseline_ppl=None, width_choice=WidthChoice(f.target, f.steps, f.ratio))
            if cfg.key not in seen:  # two targets may land on one width (integer widths): one trial
                seen.add(cfg.key)
                out.append(cfg)
        if verbose:
            print(f"widths auto {s.template.model_name}/{s.template.method}: " + "; ".join(
                f"{f.target:g}x -> " + (f"width {f.width} ({f.ratio:.3g}x, {f.steps} probes)" if f.width else "unreachable")
                for f in s.bisection.found) + (f" [{s.bisection.failed}]" if s.bisection.failed else ""), flush=True)
    return out


def _narrowest_pct(s: Search) -> float:
    return 100.0 * (1 - s.bisection.narrowest / s.bisection.intermediate)


def _record(s: Search) -> dict:
    """What MLflow keeps of one search: every probe (width -> ratio) and every target's choice."""
    return {"model": s.template.model_name, "metric": s.template.method, "baseline_ppl": s.baseline_ppl,
            "probes": {str(w): r for w, r in sorted(s.bisection.known.items())},
            "found": [_choice(f) for f in s.bisection.found], "settled": s.bisection.done, "why_not": s.bisection.failed}


def _choice(f: Found) -> dict:
    return {WIDTH_TARGET_RATIO: f.target, WIDTH: f.width, WIDTH_SEARCH_RATIO: f.ratio, WIDTH_SEARCH_STEPS: f.steps}
