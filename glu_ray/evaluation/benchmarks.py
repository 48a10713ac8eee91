"""Where the real benchmark items live (``../shared/assets/benchmarks``), resolved at run time, never committed.

``GLU_RAY_BENCHMARKS`` names the folder; else ``$GLU_RAY_SHARED/assets/benchmarks``; else
``../shared/assets/benchmarks`` beside the repository. The folder's ``MANIFEST.json`` lists every
file with its item count and sha256, checked before a suite that reads them runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path

import datasets

from glu_ray.errors import GluRayError

ENV = "GLU_RAY_BENCHMARKS"
REPO = Path(__file__).resolve().parents[2]
MANIFEST = "MANIFEST.json"


def benchmarks_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    shared = Path(os.environ.get("GLU_RAY_SHARED") or REPO.parent / "shared").expanduser()
    return shared / "assets" / "benchmarks"


def wikitext_file() -> Path:
    """The shared WikiText-2 raw test split (stage 0's text for the real-model presets), checked."""
    path = benchmarks_dir().parent / "text" / "wikitext2_raw_test.txt"
    if not path.is_file():
        raise GluRayError(f"WikiText-2 text not found at {path} (set GLU_RAY_SHARED to the folder that holds "
                          "../shared/assets)")
    return path


def nltk_data_dir() -> Path:
    """NLTK's punkt_tab beside the benchmarks (lm-eval's ifeval scoring needs it; offline it cannot download it)."""
    return benchmarks_dir().parent / "nltk_data"


def use_shared_nltk_data() -> None:
    """Point NLTK at the shared punkt_tab before lm-eval's ifeval module is imported.

    That module calls ``nltk.download("punkt_tab")`` at import when NLTK cannot find it: offline the
    download fails quietly and scoring raises later. NLTK reads NLTK_DATA when it is first imported,
    so an NLTK already imported gets the folder on its search path instead.
    """
    folder = nltk_data_dir()
    if not folder.is_dir():
        return
    os.environ.setdefault("NLTK_DATA", str(folder))
    nltk = sys.modules.get("nltk")
    if nltk is not None and str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))


@functools.cache
def _manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise GluRayError(f"real benchmark items not found: no {path} (set {ENV} to the folder that holds "
                          "../shared/assets/benchmarks)")
    return json.loads(path.read_text())["files"]


def check_benchmarks() -> Path:
    """The benchmarks folder, once every file of its manifest is there with the manifest's sha256 (2 MB: ms)."""
    folder = benchmarks_dir()
    manifest = _manifest(folder)
    for name in manifest:
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest() if (folder / name).is_file() else "missing"
        if digest != manifest[name]["sha256"]:
            raise GluRayError(f"{folder / name}: sha256 {digest}, the manifest says {manifest[name]['sha256']}")
    return folder


def read_jsonl(name: str) -> list[dict]:
    path = benchmarks_dir() / name
    if not path.is_file():
        raise GluRayError(f"real benchmark file {path} not found (set {ENV})")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def dataset_dict(splits: dict[str, list[dict]]) -> datasets.DatasetDict:
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split, rows in splits.items()})
