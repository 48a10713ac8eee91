"""Core invariants of GLU width pruning: metrics, widths, rank/prune, save/reload, CLI errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import make_tiny_llama
from glu_ray import GluRayError, Ranking, TargetWidth, Width, glu_layers, prune, rank, resolve_width, save_pruned
from glu_ray.cli.main import main as cli_main
from glu_ray.pruning.importance import METRICS, _near_fp32_midpoint, get_metric, metric, score_layer
from glu_ray.pruning.widths import round_to_divisor


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny ops on an oversubscribed 2-CPU box: a second OpenMP thread only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def logits(model) -> torch.Tensor:
    ids = torch.arange(24).remainder(model.config.vocab_size).reshape(2, 12)
    with torch.no_grad():
        return model(ids).logits


def pruned_copy(model, metric_name: str, pct: float):
    model = copy.deepcopy(model)
    cfg = model.config
    report = prune(model, rank(model, metric_name), resolve_width(TargetWidth(pruning_pct=pct), cfg.intermediate_size,
                                                                  cfg.hidden_size))
    return model, report


# ---------------------------------------------------------------- metrics on hand-made weights

G = torch.tensor([[1.0, -2.0, 3.0, 0.0], [0.5, 0.5, -0.5, -0.5], [-4.0, -1.0, -1.0, -2.0]])  # [I=3, H=4]
U = torch.tensor([[0.0, 1.0, 0.0, -1.0], [2.0, 2.0, 2.0, 2.0], [1.0, -1.0, 3.0, -3.0]])


def test_maw_formula():
    # (max G + |min G|) + (max U + |min U|): (3+2)+(1+1), (0.5+0.5)+(2+2), (-1+4)+(3+3)
    assert score_layer("maw", G, U).tolist() == [7.0, 5.0, 9.0]


def test_vow_formula_is_unbiased_variance():
    def var(row):  # sum of squared deviations / (n - 1)
        m = sum(row) / len(row)
        return sum((x - m) ** 2 for x in row) / (len(row) - 1)

    expected = [var(g) + var(u) for g, u in zip(G.tolist(), U.tolist())]
    assert score_layer("vow", G, U).tolist() == pytest.approx(expected, rel=1e-6)


def test_pon_and_l2_formulas():
    # ||G||_1 * ||U||_1 and ||G||_2 + ||U||_2
    assert score_layer("pon", G, U).tolist() == [6.0 * 2.0, 2.0 * 8.0, 8.0 * 8.0]
    expected_l2 = [14**0.5 + 2**0.5, 1.0 + 4.0, 22**0.5 + 20**0.5]
    assert score_layer("l2", G, U).tolist() == pytest.approx(expected_l2, rel=1e-6)


def test_scores_are_fp32_on_bf16_weights_and_match_fp32_scores():
    for name in ("maw", "vow", "pon", "l2"):
        scores = score_layer(name, G.bfloat16(), U.bfloat16())  # G, U are exact in bf16
        assert scores.dtype == torch.float32
        assert torch.equal(scores, score_layer(name, G, U))


def test_vow_equals_torch_var_bitwise_across_dtypes_and_blocks():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(700, 96, generator=gen) * 0.02 + torch.randn(700, 1, generator=gen) * 0.05
    for dtype in (torch.float32, torch.bfloat16):
        x = w.to(dtype)
        assert torch.equal(score_layer("vow", x, x), torch.var(x.float(), dim=1) * 2)


def test_midpoint_guard_flags_values_on_an_fp32_rounding_midpoint():
    exact = torch.tensor([1.0 + 2.0**-24, 1.0 + 2.0**-26, 0.0], dtype=torch.float64)  # midpoint, clear, zero
    flagged = _near_fp32_midpoint(exact, exact.float(), rel_tol=1e-12)
    assert flagged[:2].tolist() == [True, False]


def test_random_metric_is_seeded():
    a, b = score_layer("random", G, U, seed=1), score_layer("random", G, U, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, score_layer("random", G, U, seed=2))
    assert ((0 <= a) & (a < 1)).all()


def test_registered_metric_gets_fp32_weights():
    seen = {}

    @metric("_test_dtype")
    def _probe(gate, up, *, seed=0):
        seen["dtype"] = gate.dtype
        return gate.sum(dim=1)

    try:
        score_layer("_test_dtype", G.bfloat16(), U.bfloat16())
        assert seen["dtype"] == torch.float32
    finally:
        del METRICS["_test_dtype"]


def test_unknown_metric_lists_the_valid_ones():
    with pytest.raises(GluRayError, match="valid: .*maw.*pon.*vow"):
        get_metric("magnitude")


def test_aliases_resolve_to_the_registered_metric(tiny_llama):
    from glu_ray.pruning.importance import canonical_metric

    assert canonical_metric("PPM") == "maw" and canonical_metric(" Vow ") == "vow" and canonical_metric("new") == "new"
    assert get_metric("ppm") is METRICS["maw"]
    assert rank(tiny_llama, "PPM").metric == "maw"  # one name downstream: caches, runs, reports


# ---------------------------------------------------------------- widths


@pytest.mark.parametrize(
    "pct, kept", [(10, 7373), (20, 6554), (30, 5735), (40, 4916), (50, 4096), (60, 3277)]
)
def test_study_widths_llama_1b(pct, kept):
    w = resolve_width(TargetWidth(pruning_pct=pct), 8192, 2048)
    assert w.width == kept
    assert w.pruning_pct == pytest.approx(100 * (1 - kept / 8192))
    assert w.expansion_ratio == pytest.approx(kept / 2048)


@pytest.mark.parametrize("intermediate, hidden, ratio, kept", [(8192, 3072, 2.4, 7373), (8192, 2048, 2.4, 4916)])
def test_expansion_ratio_widths(intermediate, hidden, ratio, kept):
    assert resolve_width(TargetWidth(expansion_ratio=ratio), intermediate, hidden).width == kept


def test_integral_ratio_keeps_exactly_ratio_times_hidden():
    assert resolve_width(TargetWidth(expansion_ratio=2.0), 80, 32).width == 64
    assert resolve_width(TargetWidth(expansion_ratio=1.75), 172, 64).width == 112


def test_explicit_width_and_zero_percent():
    assert resolve_width(TargetWidth(width=100), 8192, 2048) == Width(100, 8192, 2048)
    assert resolve_width(TargetWidth(pruning_pct=0), 8192, 2048).width == 8192


@pytest.mark.parametrize(
    "width, divisor, intermediate, expected",
    [(4916, 128, 8192, 4864), (4950, 128, 8192, 4992), (4928, 128, 8192, 4992), (10, 256, 8192, 256),
     (8100, 256, 8100, 8100), (7373, 64, 8192, 7360)],
)
def test_divisor_rounds_to_nearest_multiple_clamped(width, divisor, intermediate, expected):
    rounded = round_to_divisor(width, divisor, intermediate)
    assert rounded == expected and type(rounded) is int  # a width: an index count, never 4864.0


def test_the_narrowest_widths_keep_one_neuron_and_no_more_than_the_layer(tiny_llama):
    assert resolve_width(TargetWidth(pruning_pct=99.99), 80, 32).width == 1  # 79.99 removed: 79, one kept
    ranking = rank(tiny_llama, "maw")
    model = copy.deepcopy(tiny_llama)
    prune(model, ranking, Width(1, 80, 32))  # one neuron per layer is a valid width
    assert all(t.width == 1 for t in glu_layers(model))
    with pytest.raises(GluRayError, match=r"width must be in \[1, 80\] \(got 81\)"):
        prune(copy.deepcopy(tiny_llama), ranking, Width(81, 80, 32))


def test_divisor_applies_after_the_target():
    assert resolve_width(TargetWidth(pruning_pct=40, divisor=128), 8192, 2048).width == 4864


@pytest.mark.parametrize(
    "kwargs",
    [{}, dict(pruning_pct=10, expansion_ratio=2.0), dict(pruning_pct=10, divisor=100)],
)
def test_bad_targets_raise(kwargs):
    with pytest.raises(GluRayError):
        TargetWidth(**kwargs)


@pytest.mark.parametrize(
    "target",
    [TargetWidth(pruning_pct=100), TargetWidth(pruning_pct=-1), TargetWidth(expansion_ratio=0),
     TargetWidth(expansion_ratio=4.5), TargetWidth(width=0), TargetWidth(width=8193)],
)
def test_out_of_range_targets_raise(target):
    with pytest.raises(GluRayError):
        resolve_width(target, 8192, 2048)


# ---------------------------------------------------------------- rank / prune


def test_zero_percent_is_the_identity(tiny_llama):
    before = logits(tiny_llama)
    pruned, report = pruned_copy(tiny_llama, "maw", 0)
    assert torch.equal(logits(pruned), before)
    assert report.params_before == report.params_after and report.pruning_pct == 0


def test_removing_neurons_with_zero_down_columns_keeps_logits(tiny_llama):
    model = copy.deepcopy(tiny_llama)
    dead = torch.tensor([0, 5, 17, 40, 79])
    scores = []
    for t in glu_layers(model):
        t.down.weight.data[:, dead] = 0  # these neurons contribute nothing to the output
        s = torch.ones(t.width)
        s[dead] = 0
        scores.append(s)
    before = logits(model)
    ranking = Ranking("manual", 0, tuple(torch.argsort(s, descending=True, stable=True) for s in scores), 0.0,
                      tuple(scores))
    prune(model, ranking, Width(80 - len(dead), 80, 32))
    torch.testing.assert_close(logits(model), before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["maw", "vow", "pon", "l2", "random"])
def test_kept_set_is_top_k_of_the_score_in_original_order(tiny_llama, name):
    original = [t.gate.weight.detach().clone() for t in glu_layers(tiny_llama)]
    scores = [score_layer(name, t.gate.weight, t.up.weight, seed=t.index) for t in glu_layers(tiny_llama)]
    pruned, _ = pruned_copy(tiny_llama, name, 40)
    for t, w, s in zip(glu_layers(pruned), original, scores):
        keep = torch.sort(torch.topk(s, 48).indices).values
        assert torch.equal(t.gate.weight, w[keep])
        assert s[keep].min() >= s[torch.ones_like(s, dtype=torch.bool).index_fill_(0, keep, False)].max()


def test_config_shapes_and_report_are_updated():
    model = make_tiny_llama(mlp_bias=True)
    pruned, report = pruned_copy(model, "pon", 60)  # 80 - int(48.0) = 32 kept
    assert pruned.config.intermediate_size == 32
    for t in glu_layers(pruned):
        assert t.gate.weight.shape == t.up.weight.shape == (32, 32) and t.gate.bias.shape == (32,)
        assert t.down.weight.shape == (32, 32) and t.down.bias.shape == (32,)
        assert (t.gate.out_features, t.up.out_features, t.down.in_features) == (32, 32, 32)
    removed_per_layer = 48 * (32 + 32 + 32) + 48 * 2  # gate/up rows + down columns, gate/up bias
    assert report.params_before - report.params_after == 2 * removed_per_layer
    assert report.layer_widths == (32, 32) and report.width == 32
    assert report.pruning_pct == pytest.approx(60) and report.expansion_ratio == pytest.approx(1.0)


def test_ranking_is_computed_once_and_reused_across_widths(tiny_llama, monkeypatch):
    import glu_ray.pruning.prune as prune_module

    ranking = rank(tiny_llama, "maw")
    saved = [t.clone() for t in ranking.order + ranking.scores]
    scored = []
    monkeypatch.setattr(prune_module, "score_layer", lambda *a, **k: scored.append(a) or torch.zeros(0))
    for kept in (72, 48, 32):
        model = copy.deepcopy(tiny_llama)
        prune(model, ranking, Width(kept, 80, 32))
        assert model.config.intermediate_size == kept
        assert not scored, "prune scored the neurons again instead of reading the ranking"
        assert all(torch.equal(a, b) for a, b in zip(ranking.order + ranking.scores, saved)), "prune changed the ranking"
        for before, after in zip(glu_layers(tiny_llama), glu_layers(model)):
            keep = ranking.keep(before.index, kept)
            assert torch.equal(after.gate.weight, before.gate.weight[keep])
            assert torch.equal(after.up.weight, before.up.weight[keep])
            assert torch.equal(after.down.weight, before.down.weight[:, keep])


def test_ranking_save_load_round_trip(tiny_llama, tmp_path):
    ranking = rank(tiny_llama, "vow")
    ranking.save(tmp_path / "r.pt")
    loaded = Ranking.load(tmp_path / "r.pt")
    assert all(torch.equal(loaded.keep(i, 40), ranking.keep(i, 40)) for i in range(2))
    # Every field, the calibration's fingerprint and per-neuron means too (bias compensation reads
    # them from a cached ranking).
    calibrated = Ranking("wanda", 3, ranking.order, 1.5, ranking.scores, "fingerprint-abc",
                         tuple(torch.rand(80, dtype=torch.float64) for _ in range(2)))
    calibrated.save(tmp_path / "c.pt")
    back = Ranking.load(tmp_path / "c.pt")
    assert (back.metric, back.seed, back.seconds, back.calibration) == ("wanda", 3, 1.5, "fingerprint-abc")
    for field in ("order", "scores", "means"):
        mine, theirs = getattr(back, field), getattr(calibrated, field)
        assert isinstance(mine, tuple) and len(mine) == 2 and all(torch.equal(a, b) for a, b in zip(mine, theirs))


class NotATensor:  # what a tampered ranking file could carry: an object pickle would rebuild
    pass


def test_ranking_files_load_tensors_only(tmp_path):
    torch.save({"metric": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):  # torch's UnpicklingError
        Ranking.load(tmp_path / "evil.pt")


def test_prune_rejects_a_ranking_from_another_model(tiny_llama):
    ranking = rank(tiny_llama, "maw")
    with pytest.raises(GluRayError, match="layers"):
        prune(make_tiny_llama(num_hidden_layers=3), ranking, Width(40, 80, 32))
    pruned, _ = pruned_copy(tiny_llama, "maw", 40)
    with pytest.raises(GluRayError, match="intermediate size"):
        prune(pruned, ranking, Width(20, 80, 32))


def test_save_and_reload_with_stock_transformers(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    pruned, report = pruned_copy(tiny_llama, "maw", 40)
    out = save_pruned(pruned, None, tmp_path / "new" / "folder", report)  # folders made as needed
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert reloaded.config.intermediate_size == 48
    assert torch.equal(logits(reloaded), logits(pruned))
    assert json.loads((out / "glu_ray_prune.json").read_text()) == json.loads(json.dumps(report.to_dict()))
    assert report.summary().startswith("maw: width 48 (1.500x, 40.0% removed) in 2 layers; params ")
    fewer = 100 * (1 - report.params_after / report.params_before)
    assert f"({fewer:.1f}% fewer); " in report.summary() and "bias" not in report.summary()


def test_non_glu_model_error_names_what_is_missing():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32))
    with pytest.raises(GluRayError, match=r"gate_proj.*up_proj.*down_proj.*c_fc"):
        rank(model, "maw")


# ---------------------------------------------------------------- CLI


def test_cli_prunes_a_saved_tiny_model(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    rc = cli_main(["prune", "--model", str(tiny_model_dir), "--metric", "maw", "--pruning-pct", "40",
                   "--device", "cpu", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "width 48" in printed and "params" in printed
    assert AutoModelForCausalLM.from_pretrained(out).config.intermediate_size == 48
    assert (out / "tokenizer.json").is_file()


def test_cli_prunes_stories260k(stories_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "p"
    rc = cli_main(["prune", "--model", str(stories_dir), "--metric", "maw", "--pruning-pct", "40",
                   "--device", "cpu", "--out", str(out)])
    assert rc == 0
    assert AutoModelForCausalLM.from_pretrained(out).config.intermediate_size == 104


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "magnitude", "--pruning-pct", "40"], "valid: "),
        (["--metric", "maw", "--expansion-ratio", "9"], "expansion ratio"),
        (["--metric", "maw", "--pruning-pct", "100"], "percentage"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tiny_model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    rc = cli_main(["prune", "--model", str(tiny_model_dir), *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # rejected before any work


def test_cli_path_that_is_not_a_model(tmp_path, capsys):
    rc = cli_main(["prune", "--model", str(tmp_path), "--metric", "maw", "--pruning-pct", "40",
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "is not a model" in err and len(err.strip().splitlines()) == 1


def test_cli_rejects_two_targets(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["prune", "--model", str(tiny_model_dir), "--metric", "maw", "--pruning-pct", "40",
                  "--expansion-ratio", "2.0", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
