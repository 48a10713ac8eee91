import math

from glu_ray.trials.ledger import Event, Ledger


def test_append_and_read_back_including_nan(tmp_path):
    led = Ledger(tmp_path / "l.jsonl")
    led.append(Event("a", "result", 0, "running", {"ppl/word_perplexity": float("nan"), "width": 3}))
    led.append(Event("a", "result", 1, "completed", {"x/acc": 0.5}))
    led.append(Event("a", "end", None, "completed", {}))
    row = led.results()["a"]
    assert math.isnan(row["ppl/word_perplexity"]) and row["x/acc"] == 0.5 and row["status"] == "completed"
    assert led.finished() == {"a": "completed"}


def test_failed_trials_are_not_finished_and_a_new_attempt_resets_rows(tmp_path):
    led = Ledger(tmp_path / "l.jsonl")
    led.append(Event("b", "result", 0, "running", {"ppl/word_perplexity": 5.0}))
    led.append(Event("b", "result", 1, "running", {"stale/acc": 0.1}))
    led.append(Event("b", "end", None, "failed", {"error": "boom"}))
    assert led.finished() == {}
    led.append(Event("b", "result", 0, "stopped: catastrophic", {"ppl/word_perplexity": 50.0}))
    led.append(Event("b", "end", None, "stopped: catastrophic", {}))
    assert led.results()["b"] == {"ppl/word_perplexity": 50.0, "status": "stopped: catastrophic"}
    assert led.finished() == {"b": "stopped: catastrophic"}


def test_torn_last_line_from_a_killed_writer_is_skipped(tmp_path):
    led = Ledger(tmp_path / "l.jsonl")
    led.append(Event("c", "end", None, "completed", {}))
    with open(led.path, "a") as f:
        f.write('{"key": "d", "kind": "en')
    assert led.finished() == {"c": "completed"}
