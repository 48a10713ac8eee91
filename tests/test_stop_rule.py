"""The stop rule and its replay over a ledger of finished trials."""

from __future__ import annotations

import math

import pytest

from glu_ray.errors import GluRayError
from glu_ray.trials.ledger import Event, Ledger
from glu_ray.sweep.replay import replay, replay_text
from glu_ray.trials.stop_rule import Decision, StopRule
from glu_ray.vocab import BASELINE, PPL_WORD, TRIAL_SECONDS, TrialStatus

RULE = StopRule(threshold=10.0)
CONTROL = StopRule(reference="control", threshold=3.0)


def test_baseline_reference():
    assert RULE.decide(99.0, baseline_ppl=10.0).stop is False
    assert RULE.decide(100.0, 10.0) == Decision(False)  # exactly at the threshold: "above" it is needed
    d = RULE.decide(101.0, 10.0, control_ppl=1e9)  # the control does not matter to this rule
    assert d.stop and d.reason == "perplexity 101 > 10 x baseline 10"
    assert not RULE.decide(1e9, None).stop  # no baseline measured: nothing to compare with


def test_control_reference():
    assert not CONTROL.decide(290.0, 10.0, control_ppl=100.0).stop  # 29x baseline, 2.9x random
    d = CONTROL.decide(310.0, 10.0, 100.0)
    assert d.stop and "3 x random control 100" in d.reason
    assert not CONTROL.decide(1e6, 10.0, None).stop  # control not measured: goes on
    assert CONTROL.needs_control(("maw", "random")) and not CONTROL.needs_control(("maw",))
    assert CONTROL.describe() == "ppl > 3 x random control at the same width" and RULE.describe() == "ppl > 10 x baseline"
    assert not RULE.needs_control(("random",))


def test_non_finite_always_stops_unless_off():
    assert RULE.decide(float("nan"), None) == Decision(True, "non-finite perplexity (nan)")
    assert CONTROL.decide(float("inf"), 10.0, 1e9) == Decision(True, "non-finite perplexity (inf)")
    assert StopRule.off().decide(float("nan"), 10.0) == Decision(False)
    assert StopRule.off().to_dict()["enabled"] is False
    assert StopRule.off().describe() == "off"


def test_bad_rules_are_refused_and_the_rule_round_trips():
    for bad in (1.0, 0.5, float("nan")):
        with pytest.raises(GluRayError, match="must be > 1"):
            StopRule(threshold=bad)
    assert StopRule(threshold=1.5).threshold == 1.5  # any multiple above 1 is a rule
    with pytest.raises(GluRayError, match="reference must be one of baseline, control; got 'random'"):
        StopRule(reference="random")
    assert StopRule.from_dict(CONTROL.to_dict()) == CONTROL


def _trial(ledger, metric, width, ppl, stage0_s, total_s, status=TrialStatus.COMPLETED):
    key = f"/m|{metric}|{width}"
    ident = {"model": "/m", "model_name": "m", "metric": metric, "width": width, "pruning_pct": 0.0 if width == 100 else 50.0}
    ledger.append(Event(key, "result", 0, TrialStatus.RUNNING if total_s > stage0_s else status,
                        {**ident, PPL_WORD: ppl, TRIAL_SECONDS: stage0_s}))
    if total_s > stage0_s:
        ledger.append(Event(key, "result", 1, status, {**ident, "x/acc": 0.5, TRIAL_SECONDS: total_s}))
    ledger.append(Event(key, "end", None, status, {}))


def test_replay_counts_what_a_rule_would_stop_and_save(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    _trial(ledger, BASELINE, 100, 10.0, 5, 50)
    _trial(ledger, "random", 50, 150.0, 5, 40)  # 15x baseline: the control faces the baseline test alone
    _trial(ledger, "maw", 50, 500.0, 6, 46)  # 50x baseline, 3.3x random: stops, saves 40 s
    _trial(ledger, "vow", 50, 200.0, 6, 36)  # 20x baseline, 1.3x random: goes on
    _trial(ledger, "pon", 50, math.inf, 6, 6, status=TrialStatus.STOPPED)  # stopped in the run: saving unknown
    table = replay(RULE, tmp_path / "ledger.jsonl").set_index("metric")
    assert table["would_stop"].to_dict() == {"maw": True, "pon": True, "random": True, "vow": True}
    assert table.loc["maw", "ppl_x_control"] == pytest.approx(500 / 150)
    assert table.loc["maw", "saved_seconds"] == pytest.approx(40.0)
    assert table.loc["random", "saved_seconds"] == pytest.approx(35.0)
    assert math.isnan(table.loc["pon", "saved_seconds"]) and table.loc["vow", "saved_seconds"] == 30
    text = replay_text(RULE, table.reset_index())
    assert "would stop 4 of 4\n  saves 105 of 128 trial seconds (82%)" in text
    assert "cpu seconds" not in text  # this ledger has no CPU clock
    ctrl = replay(CONTROL, tmp_path / "ledger.jsonl").set_index("metric")  # 3.3x, 1.3x random; random has none
    assert ctrl["would_stop"].to_dict() == {"maw": True, "pon": True, "random": False, "vow": False}
    assert "saves 40 of 128 trial seconds" in replay_text(CONTROL, ctrl.reset_index())
    off = replay(StopRule.off(), tmp_path / "ledger.jsonl")
    assert not off["would_stop"].any() and off["saved_seconds"].sum() == 0
