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


def test_non_finite_values_come_back_as_floats(tmp_path):
    """A catastrophic trial's inf perplexity is stored as a string (JSON has no inf) and must be read
    back as the float, or the stop rule's non-finite check would see a string."""
    led = Ledger(tmp_path / "l.jsonl")
    led.append(Event("a", "result", 0, "running", {"p": float("inf"), "q": float("-inf"), "r": float("nan"), "s": "inf-ish"}))
    row = Ledger(led.path).results()["a"]
    assert row["p"] == math.inf and row["q"] == -math.inf and math.isnan(row["r"]) and row["s"] == "inf-ish"


def test_a_ledger_in_a_new_folder_and_a_reopened_one_stay_one_line_per_event(tmp_path):
    path = tmp_path / "new" / "experiment" / "ledger.jsonl"  # folders that do not exist yet
    Ledger(path).append(Event("a", "end", None, "completed", {}))
    Ledger(path).append(Event("b", "end", None, "completed", {}))  # a rerun: the tail is whole, nothing added
    assert path.read_text().count("\n") == 2 and "" not in path.read_text().splitlines()


def test_a_trial_that_failed_before_any_result_has_a_row(tmp_path):
    led = Ledger(tmp_path / "l.jsonl")
    led.append(Event("a", "end", None, "failed", {"error": "model did not load"}))
    assert led.results() == {"a": {"error": "model did not load", "status": "failed"}}
