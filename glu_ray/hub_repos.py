"""Online, before any model loads: every hub repository a run needs, looked up once at the endpoint in use.

``HF_ENDPOINT`` (default https://huggingface.co) is where transformers, datasets and lm-eval will
fetch from, so that is what is asked, with huggingface_hub's own calls and its own exception types:
a model by the metadata of its ``config.json`` (the first file loading reads; a gated model
answers ``GatedRepoError`` there even where its card is public), a dataset by its info (and, where
the hub marks it gated, by ``auth_check``). All problems come back together, each on one line
naming the repository and what needs it; an endpoint that does not answer is one line on its own.
Offline (``HF_HUB_OFFLINE``) nothing is asked: evaluation/preflight.py checks the local cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from glu_ray.errors import GluRayError, first_line

MODEL, DATASET = "model", "dataset"


@dataclass(frozen=True)
class Repo:
    kind: str  # MODEL or DATASET
    repo_id: str
    revision: str | None = None


def endpoint() -> str:
    from huggingface_hub import constants  # lazy: with the first hub call

    return constants.ENDPOINT


def check_repos(needs: Mapping[Repo, Iterable[str]]) -> None:
    """``needs``: each repository -> what needs it (benchmark or trial names). Raises one
    GluRayError listing every missing or gated repository, or the unreachable endpoint."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or not needs:
        return
    problems = [p for repo, readers in needs.items() if (p := _problem(repo, sorted(set(readers))))]
    if problems:
        raise GluRayError("; ".join(problems))


def _problem(repo: Repo, readers: list[str]) -> str | None:
    import httpx2  # huggingface_hub's HTTP client: its transport errors are "no answer"
    from huggingface_hub.errors import (
        EntryNotFoundError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError)

    where = endpoint()
    needed = f" (needed by {', '.join(readers)})" if readers else ""
    try:
        _look_up(repo)
    except GatedRepoError:
        return (f"{repo.kind} {repo.repo_id} is gated: accept its licence at {where}/"
                f"{'datasets/' if repo.kind == DATASET else ''}{repo.repo_id} and set HF_TOKEN{needed}")
    except RepositoryNotFoundError:  # after GatedRepoError, its subclass
        return f"{repo.kind} {repo.repo_id} not found at {where}{needed}"
    except RevisionNotFoundError:
        return f"{repo.kind} {repo.repo_id} has no revision {repo.revision!r} at {where}{needed}"
    except EntryNotFoundError:
        return f"{repo.kind} {repo.repo_id} at {where} has no config.json: not a model{needed}"
    except httpx2.TransportError as err:
        raise GluRayError(f"cannot reach the Hugging Face hub at {where} ({first_line(err)}): check the network, "
                          "or set HF_ENDPOINT to a hub you can reach (HF_HUB_OFFLINE=1 to use only the local cache)") from None
    except HfHubHTTPError as err:
        return f"{repo.kind} {repo.repo_id} at {where}: {first_line(err)}{needed}"
    return None


def unreachable(repo: Repo) -> str | None:
    """Why the endpoint in use gives no answer about ``repo`` (its transport error, one line), or None
    when it answers, whatever the answer, or the run is offline. One request: huggingface_hub's own
    downloads retry a dead endpoint for ~23 s a file before they give up."""
    import httpx2
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        _look_up(repo)
    except httpx2.TransportError as err:
        return first_line(err)
    except Exception:  # noqa: BLE001 - an answer (missing, gated, ...): the hub is there, loading says the rest
        return None
    return None


def commit_of(repo_id: str, revision: str | None = None) -> str | None:
    """The commit hub model ``repo_id``'s ``revision`` (None: main) is at: asked of the endpoint in
    use (the commit it serves config.json from), offline read from the local cache; None where
    neither knows (the preflight, or the load, says why)."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        try:
            return get_hf_file_metadata(hf_hub_url(repo_id, "config.json", revision=revision)).commit_hash
        except Exception:  # noqa: BLE001 - missing, gated, unreachable: check_repos names each
            return None
    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(cached).parent.name if isinstance(cached, str) else None  # .../snapshots/<commit>/config.json


def _look_up(repo: Repo) -> None:
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

    if repo.kind == MODEL:
        get_hf_file_metadata(hf_hub_url(repo.repo_id, "config.json", revision=repo.revision))
        return
    api = HfApi()
    info = api.dataset_info(repo.repo_id, revision=repo.revision)
    if getattr(info, "gated", False):
        api.auth_check(repo.repo_id, repo_type="dataset")


def is_hub_id(source: str) -> bool:
    """``org/name`` that is not a local path (a local folder, or a fetched alias's, is never asked for)."""
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and not Path(source).expanduser().exists()
