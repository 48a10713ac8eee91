"""Security defaults: the UI binds to loopback, model code from the hub never runs unless asked,
weights load through safetensors when a checkpoint has them. (Credentials never reaching params,
tags, artifacts or logs, and no connection leaving loopback, are checked on a real sweep in
test_faults_driver.py.)"""

from __future__ import annotations

import shutil

import pytest
import torch

pytestmark = pytest.mark.faults


def test_ui_binds_to_loopback_by_default():
    from glu_ray.cli.main import build_parser
    from glu_ray.cli.ui import Store, server_command

    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    cmd = server_command(Store("sqlite:///x.db", None, None), args.host, args.port)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"


@pytest.fixture
def hub_calls(monkeypatch):
    """Every transformers from_pretrained / AutoConfig call, with its keyword arguments."""
    import transformers

    calls = []
    for cls_name in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM"):
        cls = getattr(transformers, cls_name)
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, _name=cls_name, **kwargs):
            calls.append((_name, kwargs))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return calls


def test_trust_remote_code_is_off_unless_asked(hub_calls, tiny_model_dir, tmp_path):
    from glu_ray.cli.main import main
    from glu_ray.trials.config import EvalSpec
    from glu_ray.sweep.grid import ModelSpec, SweepGrid, build_trials
    from glu_ray.pruning.widths import TargetWidth

    assert main(["prune", "--model", str(tiny_model_dir), "--metric", "maw", "--pruning-pct", "50",
                 "--out", str(tmp_path / "p")]) == 0
    build_trials(SweepGrid((ModelSpec(str(tiny_model_dir), "tiny"),), ("maw",), (TargetWidth(pruning_pct=50),),
                           EvalSpec(suite="tiny", tasks=("tiny_mc",))))
    assert {name for name, _ in hub_calls} == {"AutoConfig", "AutoTokenizer", "AutoModelForCausalLM"}
    assert all(kw.get("trust_remote_code") is False for _, kw in hub_calls), hub_calls
    hub_calls.clear()
    assert main(["prune", "--model", str(tiny_model_dir), "--metric", "maw", "--pruning-pct", "50",
                 "--out", str(tmp_path / "q"), "--trust-remote-code"]) == 0
    assert hub_calls and all(kw.get("trust_remote_code") is True for _, kw in hub_calls)


def test_weights_load_through_safetensors_not_pickle(tiny_model_dir, tmp_path, hub_calls):
    """A folder with both files: the pickle is garbage, so loading at all proves it was never read."""
    from glu_ray.models.loading import load_model

    folder = tmp_path / "both"
    shutil.copytree(tiny_model_dir, folder)
    assert list(folder.glob("*.safetensors"))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not a checkpoint: unpickling this would fail")
    model, _ = load_model(str(folder), device="cpu")
    reference, _ = load_model(str(tiny_model_dir), device="cpu")
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.equal(p, q), name
    (model_kw,) = [kw for name, kw in hub_calls if name == "AutoModelForCausalLM"][:1]
    assert model_kw["use_safetensors"] is True
