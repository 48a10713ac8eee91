"""Loading causal LMs and finding their GLU MLPs (the gate/up/down triples we prune)."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from glu_ray.errors import GluRayError, first_line
from glu_ray.models.fetch import resolve_model_source
from glu_ray.models.precision import DtypeChoice, choose_dtype

GLU_PARTS = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class GLUTriple:
    """One decoder layer's MLP: gate [I, H], up [I, H], down [H, I] (weights as nn.Linear stores them)."""

    index: int
    mlp: nn.Module

    @property
    def gate(self) -> nn.Linear:
        return self.mlp.gate_proj

    @property
    def up(self) -> nn.Linear:
        return self.mlp.up_proj

    @property
    def down(self) -> nn.Linear:
        return self.mlp.down_proj

    @property
    def width(self) -> int:
        return self.mlp.gate_proj.out_features


def _is_glu(module: nn.Module) -> bool:
    return all(isinstance(getattr(module, part, None), nn.Linear) for part in GLU_PARTS)


def glu_layers(model: nn.Module) -> list[GLUTriple]:
    """The GLU MLP of every decoder layer, in layer order.

    Works for any model whose layers have ``mlp.gate_proj/up_proj/down_proj`` (Llama, Mistral,
    Qwen2, Gemma, ...); anything else raises GluRayError naming what was expected.
    """
    mlps = [m for name, m in model.named_modules() if name.split(".")[-1] == "mlp"]
    triples = [GLUTriple(i, m) for i, m in enumerate(mlps) if _is_glu(m)]
    if not triples or len(triples) != len(mlps):
        found = sorted({n for m in mlps for n, c in m.named_children()}) if mlps else []
        kind = type(model).__name__
        raise GluRayError(
            f"{kind} is not a GLU model: every decoder layer needs mlp.gate_proj, mlp.up_proj and "
            f"mlp.down_proj (found MLP children: {', '.join(found) or 'no `mlp` modules'})"
        )
    return triples


def check_model_source(source: str) -> None:
    """Reject a local path that is not a Hugging Face model folder, before anything loads."""
    path = Path(source).expanduser()
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local and not (path / "config.json").is_file():
        raise GluRayError(f"{source!r} is not a model: expected a folder with config.json (or a hub id)")


def check_glu_config(source: str, *, trust_remote_code: bool = False, local_files_only: bool = False,
                     revision: str | None = None) -> "object":
    """Load only the config, build the model on the meta device, and check it is GLU.

    Costs milliseconds and no weights, so sweeps validate every model up front. ``source`` may be a
    fetched alias (``smollm2``: see glu_ray/models/fetch.py). Returns the transformers config.
    ``local_files_only``: a hub id from the local Hugging Face cache alone, nothing asked of the hub.
    """
    from transformers import AutoConfig, AutoModelForCausalLM  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)

    source = resolve_model_source(source)
    check_model_source(source)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=local_files_only,
                                            revision=revision)
    except (OSError, ValueError) as err:
        raise GluRayError(f"cannot read a model config from {source!r}: {first_line(err)}") from None
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    glu_layers(skeleton)
    return config


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(config, requested: str | None, *, device: str | None = None) -> DtypeChoice:
    """The dtype a model of ``config`` (check_glu_config's) loads in on ``device``: ``requested``, or
    for None/``auto`` the one glu_ray.models.precision picks (bf16 on CUDA where supported; on a CPU
    the faster, measured on this model's MLP shape)."""
    return choose_dtype(requested, device or default_device(), config.hidden_size, config.intermediate_size)


def load_model(
    source: str,
    *,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    local_files_only: bool = False,
    config=None,
):
    """Load (model, tokenizer) from a local folder or a hub id, checked to be a GLU model.

    ``dtype`` a torch dtype, its name, or None/``auto`` (see ``resolve_dtype``). Weights load
    through safetensors when the checkpoint has them; ``trust_remote_code`` stays off unless asked
    for. A fetched alias (``smollm2``) loads its cached folder. ``local_files_only``: a hub id from
    the local Hugging Face cache alone (see glu_ray.sweep.trial: a hub that stopped answering).
    ``revision``: a branch, tag or commit of a hub id. ``config``: check_glu_config's, already read
    (at the same revision), so the config is read and checked once.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)

    source = resolve_model_source(source)
    device = device or default_device()
    opts = {"trust_remote_code": trust_remote_code, "local_files_only": local_files_only}
    config = config or check_glu_config(source, revision=revision, **opts)
    if not isinstance(dtype, torch.dtype):
        dtype = resolve_dtype(config, dtype, device=device).torch_dtype
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, **opts)
    except (OSError, ValueError) as err:
        raise GluRayError(f"{source!r} has no usable tokenizer: {first_line(err)}") from None
    # transformers 5.25 does not pass local_files_only on to its probe for a PEFT adapter's config:
    # without this it asks the hub anyway (and a dead hub ~23 s, with retries).
    adapter = {"adapter_kwargs": {"local_files_only": True}} if local_files_only else {}
    model = AutoModelForCausalLM.from_pretrained(
        source, config=config, dtype=dtype, revision=revision, use_safetensors=_has_safetensors(source), **opts, **adapter
    ).to(device)
    model.eval()
    return model, tokenizer


def _has_safetensors(source: str) -> bool | None:
    path = Path(source)
    if path.is_dir():
        return any(path.glob("*.safetensors")) or None
    return None  # hub id: let transformers prefer safetensors when the repo has them



def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def free_memory() -> None:
    """What a finished model or a failed batch held: Python's garbage, then CUDA's cached blocks."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
