"""Fast checks behind the fault tests: the OOM retry policy and a ledger torn by a killed driver."""

from __future__ import annotations

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

    def fn_failing_above(limit):
        tried = []

        def fn(bs):
            tried.append(bs)
            if bs > limit:
                raise torch.OutOfMemoryError(f"CUDA out of memory at {bs}")
            return bs
        return fn, tried

    fn, tried = fn_failing_above(1)
    assert _with_oom_retry(fn, 8) == 1 and tried == [8, 4, 2, 1]
    fn, tried = fn_failing_above(0)  # out of memory even at batch 1: the last error is the trial's
    with pytest.raises(torch.OutOfMemoryError, match="at 1$"):
        _with_oom_retry(fn, 2)
    assert tried == [2, 1]
    tried = []

    def other_error(bs):
        tried.append(bs)
        raise RuntimeError("not a memory error")

    with pytest.raises(RuntimeError, match="not a memory error"):
        _with_oom_retry(other_error, 8)
    assert tried == [8]  # only out-of-memory is retried
