"""--widths auto, without Ray: the bisection on a synthetic monotone ppl(width), and the Tune
Searcher driven by hand (its probes depend only on each search's own results)."""

from __future__ import annotations

import math
import random

import pytest

from glu_ray.errors import GluRayError
from glu_ray.pruning.widths import Width
from glu_ray.sweep.width_search import Bisection, WidthSearch
from glu_ray.trials.config import EvalSpec, TrialConfig

NATIVE = 1000


def ratio(width: int, k: float = 3.0) -> float:
    """A synthetic stage-0 ratio: 1 at the full width, e^k when everything is pruned."""
    return math.exp(k * (NATIVE - width) / NATIVE)


def run(bis: Bisection, f=ratio) -> list[int]:
    probes = []
    while (w := bis.next_width()) is not None:
        probes.append(w)
        bis.record(w, f(w))
    return probes


def test_each_target_lands_on_the_width_next_to_it_and_an_unreachable_one_is_reported():
    bis = Bisection(NATIVE, narrowest=50, targets=(1.25, 2.0, 5.0, 100.0), max_steps=12)
    probes = run(bis)
    assert len(probes) == len(set(probes))  # never measures a width twice
    for f in bis.found[:3]:
        exact = NATIVE - NATIVE * math.log(f.target) / 3.0  # where ratio(w) == target
        assert abs(f.width - exact) <= 1, f  # the integer width next to it
        assert f.ratio == ratio(f.width) and f.steps <= 12
    last = bis.found[3]
    assert (last.target, last.width, last.reachable) == (100.0, None, False)
    assert last.ratio == pytest.approx(ratio(50))  # what the narrowest width reached


def test_max_steps_caps_every_target_and_the_same_inputs_give_the_same_widths():
    a = Bisection(NATIVE, 50, (1.25, 1.5, 2.0, 3.0, 5.0, 10.0), max_steps=4)
    b = Bisection(NATIVE, 50, (1.25, 1.5, 2.0, 3.0, 5.0, 10.0), max_steps=4)
    assert run(a) == run(b) and a.found == b.found
    assert all(f.steps <= 4 for f in a.found) and len(a.known) <= 6 * 4 + 1


def test_a_noisy_non_monotone_curve_still_terminates_with_every_target_settled():
    rng = random.Random(0)
    noisy = {w: ratio(w) * math.exp(rng.uniform(-0.3, 0.3)) for w in range(NATIVE + 1)}
    bis = Bisection(NATIVE, 50, (1.25, 1.5, 2.0, 3.0, 5.0, 10.0), max_steps=8)
    probes = run(bis, noisy.__getitem__)
    assert bis.done and len(bis.found) == 6 and len(probes) <= 6 * 8 + 1


def test_targets_within_the_first_few_neurons_are_reached_in_a_few_probes():
    """The smol run: SmolLM2's MAW doubles the perplexity at 7 of 1,536 neurons pruned. Halving the
    width from [768, 1536] was still 12 neurons off after 6 probes, and its 1.5x trial landed at
    4.6x; bisecting the neurons pruned geometrically lands every target within a neuron's step."""
    step = 0.15  # one neuron pruned multiplies the ratio by e^0.15: 1.5x at ~3 pruned, 5x at ~11
    fragile = lambda w: math.exp(step * (NATIVE - w))  # noqa: E731
    bis = Bisection(NATIVE, narrowest=NATIVE // 2, targets=(1.5, 2.0, 3.0, 5.0), max_steps=6)
    run(bis, fragile)
    assert [f.reachable for f in bis.found] == [True] * 4 and all(f.steps <= 6 for f in bis.found)
    for f in bis.found:
        assert abs(math.log(f.ratio / f.target)) <= step, f
    # Where the steps can halve the bracket to one neuron, the probes are the plain midpoints.
    plain = Bisection(NATIVE, narrowest=NATIVE - 64, targets=(2.0,), max_steps=8)
    assert run(plain, fragile)[:4] == [NATIVE - 64, NATIVE - 32, NATIVE - 16, NATIVE - 8]


def test_a_failed_probe_stops_the_search_without_looping():
    bis = Bisection(NATIVE, 50, (2.0,), max_steps=8)
    w = bis.next_width()
    bis.record(w, float("nan"))
    assert bis.done and bis.next_width() is None and bis.failed


def test_bad_targets_fail_with_one_line():
    with pytest.raises(GluRayError, match="above 1"):
        WidthSearch(targets=(0.5, 2.0))
    assert WidthSearch(targets=(5, 2, 2)).targets == (2.0, 5.0)  # sorted, once each: a fixed order
    assert WidthSearch().narrowest(128, 32) == 128 - int(0.95 * 128)  # rounded as the grid rounds 95%


def _template(metric: str, k: float) -> TrialConfig:
    return TrialConfig(model=f"/m/{k}", model_name=f"m{k}", metric=metric, width=Width(NATIVE - 1, NATIVE, 100), num_params=1,
                       variant="base", eval=EvalSpec(), baseline_ppl=10.0)


@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_the_searcher_gives_the_same_widths_whatever_order_probes_finish_in(order):
    from glu_ray.sweep.width_searcher import WidthSearcher, searches_for

    spec = WidthSearch(targets=(1.5, 3.0), max_steps=10)
    slopes = {"/m/2.0": 2.0, "/m/4.0": 4.0}

    def drive() -> list:
        searcher = WidthSearcher(searches_for([_template("maw", 2.0), _template("vow", 4.0)], spec), {})
        flight, n = [], 0
        while True:
            while (config := searcher.suggest(f"t{n}")) not in (None, WidthSearcher.FINISHED):
                flight.append((f"t{n}", config["trial"]))
                n += 1
            if config == WidthSearcher.FINISHED:
                return [s.bisection.found for s in searcher.searches]
            tid, trial = flight.pop(0 if order == "fifo" else -1)
            ppl = 10.0 * ratio(trial["width"]["width"], slopes[trial["model"]])
            searcher.on_trial_complete(tid, {"ppl/word_perplexity": ppl})

    found = drive()
    bis = Bisection(NATIVE, 50, (1.5, 3.0), 10)
    run(bis, lambda w: ratio(w, 2.0))
    assert found[0] == bis.found  # as the bisection alone, probe for probe
    assert [f.width for f in found[1]] != [f.width for f in found[0]]  # each search reads its own results


def test_the_searcher_replays_the_ledger_and_runs_only_what_is_missing():
    from glu_ray.sweep.width_searcher import WidthSearcher, searches_for

    spec = WidthSearch(targets=(2.0,), max_steps=10)
    [search] = searches_for([_template("maw", 3.0)], spec)
    bis = Bisection(NATIVE, 50, (2.0,), 10)
    run(bis)
    measured = {search.at(w).key: {"ppl/word_perplexity": 10.0 * r} for w, r in bis.known.items()}
    searcher = WidthSearcher(searches_for([_template("maw", 3.0)], spec), measured)
    searcher.replay()
    assert searcher.done and searcher.suggest("t0") == WidthSearcher.FINISHED
    [again], [first] = searcher.searches[0].bisection.found, bis.found
    assert (again.width, again.steps) == (first.width, first.steps) and again.ratio == pytest.approx(first.ratio)
