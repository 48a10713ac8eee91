"""Run the local hub: olah's own ASGI app, offline, on loopback, under uvicorn (test and CI tooling).

    python tools/hub_mirror/serve.py up   [--dir .cache/hub-mirror]   # build, start, print HF_ENDPOINT=...
    python tools/hub_mirror/serve.py down [--dir .cache/hub-mirror]
    python tools/hub_mirror/serve.py run --dir D --port P             # the server itself, in the foreground
    python tools/hub_mirror/serve.py run --dir D --port P --exit-on RE  # ... that stops dead at a request (tests)

olah in offline mode serves the git repositories build.py wrote, and ``datasets``,
``huggingface_hub``, ``transformers`` and lm-eval talk to it as to the hub. Two answers differ from
the hub's, and a small ASGI middleware here makes them the hub's:
- a file missing from a repository that exists: olah 0.5.4 answers 401 ``RepoNotFound`` (HEAD)
  or 500 (GET), the hub 404 ``EntryNotFound``. transformers probes optional files
  (``tokenizer.model``, ...) and only the hub's answer lets it go on;
- ``/api/models/<id>`` with no revision (what ``model_info``/``dataset_info`` ask by default): the
  hub answers for ``main``; olah offline answers only ``/revision/main``, so the request is sent there;
- a gated repository (repos.GATED, the study's Llama-3.2 models): the hub answers 401
  ``GatedRepo`` without a token, 403 with one that has not been granted access. The mirror has no
  such repository; it answers as the hub does, so the client's own GatedRepoError is what a user sees.
The server is its own process (never inside glu-ray's); ``up`` writes ``<dir>/endpoint`` and
``<dir>/server.pid`` and reuses a server that still answers. ``--exit-on`` is a fault injected on
purpose: the process exits, unanswered, at the first request whose path matches, so the test of a
hub that stops mid-sweep stops it at a known point instead of at a moment guessed by timing.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from repos import GATED  # noqa: E402

DEFAULT_DIR = HERE.parents[1] / ".cache" / "hub-mirror"
# /api/{models,datasets}/org/name..., /datasets/org/name/resolve/..., /org/name/resolve/...
_REPO = re.compile(r"^/(?:api/)?(?:(models|datasets|spaces)/)?([^/]+)/([^/]+)(/.*)?$")


def repo_of(path: str) -> tuple[str, str] | None:
    """(repo type, org/name) a request path is about, or None (site pages, hash routes)."""
    m = _REPO.match(path)
    if not m or m.group(2) in ("api", "repos", "static"):
        return None
    rest = m.group(4) or ""
    if not path.startswith("/api/") and not rest.startswith("/resolve/"):
        return None
    return (m.group(1) or "models"), f"{m.group(2)}/{m.group(3)}"


class HubAnswers:
    """ASGI middleware: the hub's answers where olah's offline mirror answers otherwise."""

    def __init__(self, app, mirrors: Path, gated: tuple[str, ...] = GATED):
        self.app, self.mirrors, self.gated = app, mirrors, set(gated)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        found = repo_of(scope["path"])
        if found and found[1] in self.gated:
            return await self._gated(scope, send, *found)
        local = self.mirrors / found[0] / found[1] if found else None
        if local is None or not local.is_dir():
            return await self.app(scope, receive, send)
        rest = scope["path"].split(found[1], 1)[1]
        if scope["path"].startswith("/api/") and rest in ("", "/"):
            # /api/models/<id> (no revision: what model_info/dataset_info ask by default) is the main
            # branch on the hub; olah offline answers it only with /revision/main.
            scope = {**scope, "path": f"{scope['path'].rstrip('/')}/revision/main", "raw_path": None}
        elif rest.startswith("/resolve/") and not _has_file(local, rest[len("/resolve/"):]):
            return await _answer(send, 404, "EntryNotFound", "Entry not found")
        return await self.app(scope, receive, send)

    @staticmethod
    async def _gated(scope, send, kind: str, repo_id: str):
        token = any(k.lower() == b"authorization" for k, _ in scope.get("headers", []))
        what = kind.rstrip("s")
        if token:
            msg = (f"Access to {what} {repo_id} is restricted and you are not in the authorized list. "
                   f"Visit https://huggingface.co/{repo_id} to ask for access.")
        else:
            msg = (f"Access to {what} {repo_id} is restricted. You must have access to it and be authenticated "
                   "to access it. Please log in.")
        await _answer(send, 403 if token else 401, "GatedRepo", msg)


class ExitOn:
    """ASGI middleware (a fault for tests): the first request whose path matches ``pattern`` ends
    the process before any answer, as a server that was stopped: that connection is reset, later
    ones refused."""

    def __init__(self, app, pattern: str):
        self.app, self.pattern = app, re.compile(pattern)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.pattern.search(scope["path"]):
            print(f"exiting at {scope['method']} {scope['path']} (--exit-on {self.pattern.pattern})", file=sys.stderr,
                  flush=True)
            os._exit(3)
        return await self.app(scope, receive, send)


async def _answer(send, status: int, code: str, message: str) -> None:
    """An error as the hub sends it: the X-Error-Code/-Message headers huggingface_hub reads."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-error-code", code.encode()), (b"x-error-message", message.encode())]})
    await send({"type": "http.response.body", "body": body})


@functools.lru_cache(maxsize=64)
def _git(path: Path):
    import git  # GitPython, olah's own dependency

    return git.Repo(path)


def _has_file(repo: Path, rev_and_path: str) -> bool:
    """Whether ``<rev>/<file>`` names a file of the local repository (an unknown revision: olah's to answer)."""
    rev, _, file = rev_and_path.partition("/")
    try:
        commit = _git(repo).commit(urllib.parse.unquote(rev))
    except Exception:  # noqa: BLE001 - a revision git does not know: let olah answer as it does
        return True
    try:
        return commit.tree[urllib.parse.unquote(file)].type == "blob"
    except KeyError:
        return False


def write_config(folder: Path, port: int) -> Path:
    config = folder / "olah.toml"
    config.write_text(f"""[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{folder / 'olah-repos'}"
mirrors-path = ["{folder / 'mirrors'}"]

[accessibility]
offline = true
""")
    return config


def run(folder: Path, port: int, exit_on: str | None = None) -> None:
    """The server, in this process (``serve.py run``): olah's app from its config, the middleware, uvicorn;
    with ``exit_on``, the process exits at the first request whose path matches it (ExitOn)."""
    import uvicorn

    os.environ["OLAH_CONFIG"] = str(write_config(folder, port))
    os.environ["OLAH_LOG_PATH"] = str(folder / "logs")
    from olah.server import app  # reads OLAH_CONFIG at import

    served = HubAnswers(app, folder / "mirrors")
    uvicorn.run(ExitOn(served, exit_on) if exit_on else served, host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(endpoint: str, timeout: float = 2.0) -> bool:
    """Whether a hub answers there: the API of a repository the mirror always holds."""
    try:
        with urllib.request.urlopen(f"{endpoint}/api/models/glu-ray-test/stories260K", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def up(folder: Path, wait_s: float = 90.0) -> tuple[str, bool]:
    """Build (cached), start unless a server already answers: (endpoint, whether this call started it)."""
    from build import build

    build(folder)
    endpoint_file = folder / "endpoint"
    if endpoint_file.is_file() and answers(endpoint_file.read_text().strip()):
        return endpoint_file.read_text().strip(), False
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(folder / "server.log", "ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFFLINE"))}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "run", "--dir", str(folder), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while not answers(endpoint, timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"error: the local hub did not start on {endpoint}; see {folder / 'server.log'}")
        time.sleep(0.3)
    (folder / "server.pid").write_text(str(proc.pid))
    endpoint_file.write_text(endpoint)
    return endpoint, True


def down(folder: Path) -> bool:
    """Stop the server ``up`` started (its own pid only); True when one was running."""
    pid_file = folder / "server.pid"
    if not pid_file.is_file():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    (folder / "endpoint").unlink(missing_ok=True)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("up", "down", "run"))
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--exit-on", metavar="REGEX", help="run: exit, unanswered, at the first request whose path matches")
    args = p.parse_args(argv)
    folder = args.dir.resolve()
    if args.command == "run":
        run(folder, args.port or _free_port(), args.exit_on)
    elif args.command == "up":
        print(f"HF_ENDPOINT={up(folder)[0]}")
    else:
        print("local hub stopped" if down(folder) else "no local hub was running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
