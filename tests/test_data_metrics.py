"""Data-driven metrics (act, wanda_sp, flap, hybrid) and FLAP bias compensation.

Formulas on hand-made statistics; invariants, determinism and batching on real forward passes;
bias compensation restores each layer's mean MLP output and survives save + stock reload.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_tiny_llama, make_tiny_tokenizer
from test_prune import logits, one_thread  # noqa: F401  (one_thread: autouse)

from glu_ray import (
    GluRayError,
    TargetWidth,
    glu_layers,
    prune,
    rank,
    resolve_width,
    save_pruned,
)
from glu_ray.cli.main import main as cli_main
from glu_ray.models.tiny import tiny_corpus
from glu_ray.pruning.bias_compensation import check_supported
from glu_ray.pruning.calibration import (
    CalibrationSpec,
    NeuronStats,
    calibrate,
    calibration_tokens,
    collect_stats,
)
from glu_ray.pruning.importance import METRICS, score_layer

DATA = ("act", "wanda_sp", "flap", "hybrid")


@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()[0]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dm") / "corpus.txt"
    path.write_text("\n\n".join(tiny_corpus(8, seed=s) for s in range(10)))
    return path


@pytest.fixture(scope="module", params=[{}, {"mlp_bias": True}], ids=["plain", "mlp_bias"])
def model(request, tok):
    return make_tiny_llama(seed=2, vocab_size=len(tok), **request.param)


@pytest.fixture(scope="module")
def spec(text_file):
    return CalibrationSpec(str(text_file), n_sequences=6, seq_len=32, seed=0)


@pytest.fixture(scope="module")
def stats(model, tok, spec):
    return calibrate(model, tok, spec, batch_size=4)


def width(model, pct):
    return resolve_width(TargetWidth(pruning_pct=pct), model.config.intermediate_size, model.config.hidden_size)


# ---------------------------------------------------------------- formulas on hand-made numbers

# Two neurons, three tokens: x_0 = (1, 2, 3), x_1 = (-1, -1, 2); H = 2.
HAND = NeuronStats(sum=torch.tensor([6.0, 0.0], dtype=torch.float64),
                   sumsq=torch.tensor([14.0, 6.0], dtype=torch.float64), count=3)
DOWN = torch.tensor([[1.0, -2.0], [3.0, 0.5]])  # [H=2, I=2]
G = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
U = torch.tensor([[0.0, 4.0], [-1.0, 1.0]])


def test_registry_declares_which_metrics_need_calibration():
    assert {n for n, m in METRICS.items() if m.needs_calibration} == set(DATA)
    for name in DATA:
        with pytest.raises(GluRayError, match="needs calibration"):
            score_layer(name, G, U)


def test_act_wanda_flap_formulas():
    assert score_layer("act", G, U, down_w=DOWN, stats=HAND).tolist() == pytest.approx([14**0.5, 6**0.5])
    # mean_j |W_down[j, i]| x sqrt(sumsq / count)
    expected = [(1 + 3) / 2 * (14 / 3) ** 0.5, (2 + 0.5) / 2 * (6 / 3) ** 0.5]
    assert score_layer("wanda_sp", G, U, down_w=DOWN, stats=HAND).tolist() == pytest.approx(expected)
    # unbiased var(x_i) x ||W_down[:, i]||^2: var(1,2,3) = 1, var(-1,-1,2) = 3
    assert score_layer("flap", G, U, down_w=DOWN, stats=HAND).tolist() == pytest.approx([1 * 10, 3 * 4.25])


def test_hybrid_formula():
    def ppm(w, dim):
        return w.amax(dim) + w.amin(dim).abs()

    g, u, d = ppm(G, 1), ppm(U, 1), ppm(DOWN, 0)
    expected = (g / g.max() + u / u.max() + d / d.max()) * HAND.l2.float()
    torch.testing.assert_close(score_layer("hybrid", G, U, down_w=DOWN, stats=HAND), expected)


# ---------------------------------------------------------------- on real forward passes


@pytest.mark.parametrize("name", DATA)
def test_rank_invariants_and_determinism(model, tok, spec, stats, name):
    ranking = rank(model, name, calibration=stats)
    assert ranking.calibration == spec.fingerprint and len(ranking.means) == len(glu_layers(model))
    for t, scores, order in zip(glu_layers(model), ranking.scores, ranking.order, strict=True):
        assert scores.dtype == torch.float32 and scores.shape == (t.width,)
        assert torch.isfinite(scores).all() and (scores >= 0).all()
        assert torch.equal(torch.sort(order).values, torch.arange(t.width))
    again = rank(model, name, calibration=calibrate(model, tok, spec, batch_size=4))
    assert all(torch.equal(a, b) for a, b in zip(ranking.scores, again.scores))
    other = rank(model, name, calibration=calibrate(model, tok, CalibrationSpec(spec.source, 6, 32, seed=5)))
    assert not all(torch.equal(a, b) for a, b in zip(ranking.scores, other.scores))


def test_rank_refuses_missing_or_mismatched_calibration(model, stats):
    with pytest.raises(GluRayError, match="needs calibration"):
        rank(model, "flap")
    pruned = copy.deepcopy(model)
    prune(pruned, rank(pruned, "maw"), width(model, 50))
    with pytest.raises(GluRayError, match="unpruned model"):
        rank(pruned, "act", calibration=stats)


@pytest.mark.parametrize("name", DATA)
def test_scores_do_not_depend_on_batching(model, tok, spec, name):
    ids = calibration_tokens(spec, tok)
    one = collect_stats(model, [{"input_ids": ids}])
    many = collect_stats(model, [{"input_ids": ids[i : i + 1]} for i in range(ids.shape[0])])
    a, b = rank(model, name, calibration=one), rank(model, name, calibration=many)
    for x, y in zip(a.scores, b.scores):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", DATA)
def test_prune_with_data_metric(model, stats, name):
    pruned = copy.deepcopy(model)
    report = prune(pruned, rank(pruned, name, calibration=stats), width(model, 40))
    assert report.layer_widths == (48,) * len(glu_layers(model)) and report.calibration == stats.fingerprint
    assert torch.isfinite(logits(pruned)).all()


# ---------------------------------------------------------------- bias compensation


def mlp_io(model, ids):
    """Layer 0's MLP input and output [T, H]: layer 0's input does not depend on any MLP."""
    seen = {}
    mlp = glu_layers(model)[0].mlp
    h = mlp.register_forward_hook(lambda m, i, o: seen.update(x=i[0].detach(), y=o.detach()))
    with torch.no_grad():
        model(input_ids=ids)
    h.remove()
    return seen["x"], seen["y"]


@pytest.mark.parametrize("name", ("flap", "maw"))
def test_bias_restores_the_mean_mlp_output(model, tok, spec, stats, name):
    """Over the calibration tokens, the compensated MLP's mean output equals the full MLP's."""
    ids = calibration_tokens(spec, tok)
    x, full = mlp_io(model, ids)
    ranking = rank(model, name, calibration=stats)
    plain, comp = copy.deepcopy(model), copy.deepcopy(model)
    prune(plain, ranking, width(model, 40))
    report = prune(comp, ranking, width(model, 40), bias_compensation=True)
    assert report.bias_compensation and comp.config.mlp_bias
    with torch.no_grad():
        gap_plain = (glu_layers(plain)[0].mlp(x) - full).mean(dim=(0, 1)).abs().max()
        gap_comp = (glu_layers(comp)[0].mlp(x) - full).mean(dim=(0, 1)).abs().max()
    assert gap_comp < 1e-5 < gap_plain
    for t in glu_layers(comp):
        assert t.gate.bias is not None and t.up.bias is not None and t.down.bias is not None
        if not model.config.mlp_bias:
            assert not t.gate.bias.any() and not t.up.bias.any()


def test_bias_compensation_saves_and_reloads_with_stock_transformers(model, stats, tmp_path):
    from transformers import AutoModelForCausalLM

    pruned = copy.deepcopy(model)
    report = prune(pruned, rank(pruned, "flap", calibration=stats), width(model, 30), bias_compensation=True)
    save_pruned(pruned, None, tmp_path, report)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.mlp_bias and reloaded.config.intermediate_size == report.width
    assert torch.equal(logits(reloaded), logits(pruned))


def test_bias_compensation_needs_calibration_and_an_mlp_bias_config(model):
    from transformers import Qwen2Config

    with pytest.raises(GluRayError, match="needs calibration"):
        prune(copy.deepcopy(model), rank(model, "maw"), width(model, 40), bias_compensation=True)
    with pytest.raises(GluRayError, match="mlp_bias"):
        check_supported(Qwen2Config())


# ---------------------------------------------------------------- CLI


def test_cli_flap_with_bias_compensation(tiny_model_dir, text_file, tmp_path, capsys):
    """The issue's command: the saved folder reloads with stock from_pretrained, same logits as
    the same pruning done in memory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "flap"
    calib = ["--calibration", str(text_file), "--calibration-sequences", "4", "--calibration-seq-len", "32"]
    rc = cli_main(["prune", "--model", str(tiny_model_dir), "--metric", "flap", "--pruning-pct", "40",
                   "--device", "cpu", *calib, "--bias-compensation", "--out", str(out)])
    assert rc == 0
    assert "pruned mean added as down_proj bias" in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tk = AutoTokenizer.from_pretrained(tiny_model_dir)
    stats = calibrate(model, tk, CalibrationSpec(str(text_file), 4, 32))
    prune(model, rank(model, "flap", calibration=stats), width(model, 40), bias_compensation=True)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert torch.equal(logits(reloaded), logits(model))


@pytest.mark.parametrize("extra, message", [
    (["--metric", "flap"], "needs --calibration"),
    (["--metric", "maw", "--bias-compensation"], "needs --calibration"),
    (["--metric", "act", "--calibration", "/nonexistent.txt"], "neither 'wikitext' nor a readable file"),
    (["--metric", "act", "--calibration", "wikitext"], "pass a local text file"),
])
def test_cli_calibration_errors(tiny_model_dir, tmp_path, capsys, extra, message):
    rc = cli_main(["prune", "--model", str(tiny_model_dir), "--pruning-pct", "40", "--out", str(tmp_path / "o"),
                   *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
