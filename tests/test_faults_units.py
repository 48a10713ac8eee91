"""Fast checks behind the fault tests: the OOM retry policy and a ledger torn by a killed driver."""

from __future__ import annotations

from collections import Counter

import pytest

from glu_ray.trials.ledger import Event, Ledger

pytestmark = pytest.mark.faults


def test_append_after_a_torn_line_is_not_lost(tmp_path):
    """A driver killed mid-write leaves half a line; the rerun's first append must stand on its own."""
    path = tmp_path / "ledger.jsonl"
    Ledger(path).append(Event("a", "end", None, "completed", {}))
    with open(path, "a") as f:
        f.write('{"key": "b", "kind": "res')  # SIGKILL here
    rerun = Ledger(path)
    rerun.append(Event("b", "end", None, "completed", {}))
    assert rerun.finished() == {"a": "completed", "b": "completed"}
    rerun.append(Event("c", "end", None, "completed", {}))
    assert len(path.read_text().splitlines()) == 4  # the torn line is closed once, not per append


def test_oom_retry_halves_the_batch_down_to_one():
    import torch

    from glu_ray.sweep.trial import _with_oom_retry

    tried = []

    def fn(bs):
        tried.append(bs)
        if bs > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return "ok"

    assert _with_oom_retry(fn, 8) == "ok" and tried == [8, 4, 2, 1]
    with pytest.raises(torch.OutOfMemoryError):
        _with_oom_retry(lambda bs: (_ for _ in ()).throw(torch.OutOfMemoryError("x")), 2)
    assert Counter(tried) == Counter({8: 1, 4: 1, 2: 1, 1: 1})
