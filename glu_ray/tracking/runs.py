"""MLflow tracking, written only from the sweep's driver (so SQLite never sees two writers).

Layout: one experiment per sweep; one parent run (tag ``glu_ray.role=sweep``) and one child run
per trial (``glu_ray.role=trial``, ``mlflow.parentRunId``), named like ``Llama-3.2-1B/maw/2.4x``.
Child runs carry params, per-stage metrics (step = stage), a ``glu_ray.status`` tag and the
trial's files (trial_artifacts.py). The parent run gets the hardware at the start and the results
table at the end, and the report folder the CLI writes after the sweep (glu_ray.cli.sweep). Every write can be replayed from the ledger, so reruns and
a returning server never duplicate. Nothing that looks like a credential is ever written (see
``scrub``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path

import lm_eval
import torch
from huggingface_hub import get_token

from glu_ray.models.precision import AUTO
from glu_ray.trials.config import TrialConfig
from glu_ray.trials.ledger import Ledger
from glu_ray.vocab import (BOOKKEEPING, DTYPE_USED, ERROR_TAG, NODE_ID, NODE_TAG, EXPANSION_RATIO, IDENTITY, KEY_TAG, METRIC, PARAMS_KEPT, PRUNING_PCT,
                           REPORT_TAG, ROLE_SWEEP, ROLE_TAG, ROLE_TRIAL, RUNS_VIEW_TAG, STATUS_TAG, TRIAL_CONFIG_TAG,
                           WIDTH, TrialStatus)

log = logging.getLogger("glu_ray")

# Result fields that are identity or bookkeeping, logged as params rather than metrics.
_NOT_METRICS = frozenset(IDENTITY + BOOKKEEPING)


def default_tracking_uri(storage: str | Path) -> str:
    return f"sqlite:///{Path(storage).resolve() / 'mlflow.db'}"


def is_remote(uri: str) -> bool:
    """An ``mlflow server``: it stores artifacts where it is configured to, not in our folder."""
    return uri.startswith(("http://", "https://"))


# -- secrets ---------------------------------------------------------------------------------
# A key or environment variable named like a credential (hf_token, MLFLOW_TRACKING_PASSWORD,
# AWS_SECRET_ACCESS_KEY) - but not TOKENIZERS_PARALLELISM or max_tokens.
_SECRET_NAME = re.compile(r"(?i)(?:^|[^a-z])(token|password|passwd|secret|api_?key|access_?key|private_?key)(?:$|[^a-z])")
# Credential formats worth catching anywhere: Hugging Face, GitHub, OpenAI-style, AWS key ids.
_SECRET_VALUE = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
                           r"|sk-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16})\b")
REDACTED = "[redacted]"


def secret_values() -> set[str]:
    """Values of credential-named environment variables, and the Hugging Face login token."""
    found = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8}
    try:
        token = get_token()  # HF_TOKEN, or the token file a `huggingface-cli login` left
        if token:
            found.add(token)
    except Exception:  # noqa: BLE001 - no hub client, unreadable file: nothing to hide
        pass
    return found


def redact(text: str, secrets: set[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return _SECRET_VALUE.sub(REDACTED, text)


def scrub(items: dict, secrets: set[str] | None = None) -> dict[str, str]:
    """Params/tags safe to store: credential-named keys dropped, credential values redacted."""
    secrets = secret_values() if secrets is None else secrets
    return {k: redact(str(v), secrets) for k, v in items.items() if not _SECRET_NAME.search(k)}


def scrubbed_copy(folder: Path, dest: Path, secrets: set[str]) -> Path:
    """A copy of ``folder`` whose text files have credentials redacted (the originals are left alone)."""
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("*.tmp"))
    for path in dest.rglob("*"):
        if path.is_file():
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue  # binary: our trials write none
            clean = redact(text, secrets)
            if clean != text:
                path.write_text(clean)
    return dest


def hardware() -> dict[str, str]:
    """What the sweep ran on: the Ray cluster's CPUs/GPUs and GPU names, the driver's CPU."""
    out = {"hardware_driver_cpus": str(os.cpu_count()), "hardware_cpu_model": _cpu_model() or platform.machine()}
    names: set[str] = set()
    try:
        import ray  # lazy: ray costs ~1 s at import (python -X importtime, shared CPU)

        if ray.is_initialized():
            res = ray.cluster_resources()
            out["hardware_cluster_cpus"] = str(int(res.get("CPU", 0)))
            out["hardware_cluster_gpus"] = str(int(res.get("GPU", 0)))
            out["hardware_cluster_nodes"] = str(sum(1 for n in ray.nodes() if n.get("Alive")))
            names |= {k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")}
    except Exception:  # noqa: BLE001 - provenance is best effort, never a reason to fail
        pass
    try:
        if torch.cuda.is_available():
            names |= {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
    except Exception:  # noqa: BLE001
        pass
    out["hardware_gpu_names"] = ",".join(sorted(names)) or "none"
    return out


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def trial_params(cfg: TrialConfig) -> dict[str, str]:
    """What a researcher filters on in the MLflow UI. Never includes credentials."""
    p = {
        "model": cfg.model, "model_name": cfg.model_name, "revision": cfg.revision or "main",
        "metric": cfg.method, "expansion_ratio": cfg.width.expansion_ratio,
        "pruning_pct": cfg.width.pruning_pct, "width": cfg.width.width, "hidden_size": cfg.width.hidden,
        "intermediate_size": cfg.width.intermediate, "num_params": cfg.num_params, "variant": cfg.variant,
        "suite": cfg.eval.suite, "tasks": ",".join(cfg.eval.tasks or ()) or "all", "limit": cfg.eval.limit,
        "max_gen_toks": cfg.eval.max_gen_toks, **{f"limit/{name}": n for name, n in cfg.eval.limits},
        # Why a completed trial has no benchmark scores: its metric was --stage0-only.
        "stages": "stage 0 only (--stage0-only)" if cfg.eval.stage0_only else "all",
        "batch_size": cfg.eval.batch_size, "max_length": cfg.eval.max_length, "early_stop": cfg.stop.describe(),
        "baseline_ppl": cfg.baseline_ppl, "control_ppl": cfg.control_ppl, "dtype": cfg.dtype or AUTO, "seed": cfg.seed, "lm_eval_version": lm_eval.__version__,
        "ppl_text": Path(cfg.eval.ppl_text).name if cfg.eval.ppl_text else "wikitext-2", **suite_params(cfg),
        "bias_compensation": cfg.bias_compensation, **(cfg.calibration.params() if cfg.calibration else {}),
        "efficiency": _efficiency_param(cfg),
        **(cfg.recovery.params() if cfg.recovery else {}),
        **(cfg.width_choice.params() if cfg.width_choice else {}),
    }
    return {k: str(v) for k, v in p.items()}


def _efficiency_param(cfg: TrialConfig) -> str:
    """What --measure-efficiency measured, in one line, or 'off'."""
    e = cfg.efficiency
    if e is None:
        return "off"
    answers = f"answers <= {e.answer_max_new_tokens} tokens" if e.answer_max_new_tokens else "no answers"
    return (f"prompt {e.prompt_len}, {e.gen_len} tokens forced, batch {'/'.join(map(str, e.batches))}, "
            f"{e.repeats} repeats, {answers}")


def suite_params(cfg: TrialConfig) -> dict[str, str]:
    """Few-shot settings as one filterable string (``mmlu:5,gsm8k_cot:8``) and the chat template."""
    suite = cfg.eval.load_suite()
    return {"fewshot": ",".join(f"{b.name}:{b.num_fewshot}" for b in suite.benchmarks),
            "chat_template": ",".join(suite.chat_benchmarks) or "none"}


def metrics_of(data: dict) -> dict[str, float]:
    return {k: float(v) for k, v in data.items()
            if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: str | None = None):
        from mlflow.tracking import MlflowClient  # lazy: mlflow costs ~9 s at import (python -X importtime, shared CPU)

        self.uri = tracking_uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        # A server keeps artifacts where it is configured to (--artifacts-destination); a local
        # store keeps them next to the sweep.
        where = Path(artifact_root).resolve().as_uri() if artifact_root and not is_remote(tracking_uri) else None
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment, artifact_location=where)
        # MLflow 3 opens an experiment of unknown kind on its GenAI (traces) pages: ours is model
        # development, shown as the runs table.
        self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")
        self.secrets = secret_values()  # read once: every write is checked against them
        self.parent_id: str | None = None

    def __getstate__(self) -> dict:
        # Ray pickles the Tune callbacks (and so this tracker) into <storage>/ray/*/tuner.pkl: the
        # secret values must never be written there; the unpickled copy reads them again.
        return {k: v for k, v in self.__dict__.items() if k != "secrets"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, secrets=secret_values())

    # -- runs ----------------------------------------------------------------------------
    def _find(self, tag: str, value: str):
        runs = self.client.search_runs([self.experiment_id], f"tags.`{tag}` = '{value}'", max_results=100)
        return sorted(runs, key=lambda r: r.info.start_time)

    def start_sweep(self, name: str, params: dict[str, str]) -> str:
        """The sweep's parent run; a rerun of the same sweep reopens it."""
        found = self._find(ROLE_TAG, ROLE_SWEEP)
        if found:
            self.parent_id = found[-1].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=name, tags={ROLE_TAG: ROLE_SWEEP})
            self.parent_id = run.info.run_id
            params = {**params, **hardware()}
            self._log(self.parent_id, params={k: str(v)[:6000] for k, v in params.items()})
        return self.parent_id

    def set_runs_view(self, metric_keys) -> None:
        """The runs table the MLflow UI opens with (``glu-ray ui`` links this view): what tells
        trials apart (metric, ratio, %, width) and their status first, then ``metric_keys``
        (stage-0 perplexity, headline scores); all runs visible in charts (the UI shows the first 10
        by default). Trials are child runs of the sweep's run, folded under it, and MLflow 3 drops
        ``runsExpanded`` from a shared view, so the view groups runs by role instead: the trials'
        group opens expanded, every trial showing without a click."""
        cols = [f"params.`{k}`" for k in (METRIC, EXPANSION_RATIO, PRUNING_PCT, WIDTH)] + [f"tags.`{STATUS_TAG}`"]
        cols += [f"metrics.`{k}`" for k in metric_keys]
        view = {"selectedColumns": cols, "columnOrder": cols, "runsHiddenMode": "SHOW_ALL",
                "groupBy": f"tag.average.{ROLE_TAG}"}
        self.client.set_experiment_tag(self.experiment_id, RUNS_VIEW_TAG, json.dumps(view))

    def publish(self, table, report_dir: Path | None) -> None:
        """The parent run's results table and, when the sweep wrote one, its report folder.
        Never raises: the sweep is done and every result is in the ledger."""
        if not self.parent_id:
            return
        steps = [lambda: self.log_results(table)] + ([lambda: log_report_folder(self.client, self.parent_id, report_dir)]
                                                     if report_dir else [])
        for step in steps:
            try:
                step()
            except Exception as err:  # noqa: BLE001 - the results are safe in the ledger
                log.warning("could not log the sweep's results to MLflow: %s", err)

    def log_dict(self, data, artifact_file: str) -> None:
        """A JSON artifact of the sweep run (a rerun's replaces it: one file, never two)."""
        self.client.log_dict(self.parent_id, data, artifact_file)

    def log_results(self, table) -> None:
        """``results.csv`` and ``results.json`` (an MLflow table, shown in the run's artifacts)."""
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "results.csv"
            table.to_csv(csv, index=False)
            self.client.log_artifact(self.parent_id, str(csv))
        existing = {f.path for f in self.client.list_artifacts(self.parent_id)}
        if "results.json" not in existing:
            self.client.log_table(self.parent_id, data=table, artifact_file="results.json")
            return
        # log_table appends to an existing table; a rerun's table replaces the old one instead.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "results.json"
            table.to_json(path, orient="split", index=False, date_format="iso")
            self.client.log_artifact(self.parent_id, str(path))

    def end_sweep(self, finished: bool) -> None:
        if self.parent_id:
            self.client.set_terminated(self.parent_id, "FINISHED" if finished else "KILLED")

    def trial_run(self, cfg: TrialConfig, *, fresh: bool) -> str:
        """The trial's child run. ``fresh`` drops a half-written run left by an interrupted attempt."""
        runs = self._find(KEY_TAG, cfg.key)
        keep = [r for r in runs if _status_of(r) in (TrialStatus.COMPLETED, TrialStatus.STOPPED)]
        if keep and not fresh:
            return keep[-1].info.run_id
        for r in runs:
            if r not in keep or fresh:
                self.client.delete_run(r.info.run_id)
        tags = {ROLE_TAG: ROLE_TRIAL, KEY_TAG: cfg.key, STATUS_TAG: TrialStatus.RUNNING.value,
                TRIAL_CONFIG_TAG: json.dumps(cfg.to_dict()), "mlflow.parentRunId": self.parent_id or ""}
        run = self.client.create_run(self.experiment_id, run_name=cfg.name, tags=tags)
        self._log(run.info.run_id, params=trial_params(cfg))
        return run.info.run_id

    def log_stage(self, run_id: str, stage: int, data: dict) -> None:
        # Parameters kept and the dtype used (auto resolved) are known only once the trial has
        # loaded and pruned; every stage reports them.
        params = {k: str(int(v) if k == PARAMS_KEPT else v) for k, v in data.items()
                  if k in (PARAMS_KEPT, DTYPE_USED)} if stage == 0 else None
        tags = {NODE_TAG: str(data[NODE_ID])} if stage == 0 and data.get(NODE_ID) else None  # where this attempt ran
        self._log(run_id, metrics=metrics_of(data), params=params, tags=tags, step=stage)

    def log_trial_artifacts(self, run_id: str, folder: str | None) -> None:
        """The files the trial wrote (trial_artifacts.py), credentials redacted; re-logging overwrites."""
        if not folder or not Path(folder).is_dir() or not any(Path(folder).iterdir()):
            return  # failed before writing anything
        with tempfile.TemporaryDirectory() as tmp:
            clean = scrubbed_copy(Path(folder), Path(tmp) / "trial", self.secrets)
            self.client.log_artifacts(run_id, str(clean))

    def end_trial(self, run_id: str, status: TrialStatus, error: str | None = None) -> None:
        tags = {STATUS_TAG: TrialStatus(status).value, **({ERROR_TAG: error[:5000]} if error else {})}
        # The status tag is what ``sync`` trusts, so it is the last write: a driver or server lost
        # between the two leaves a run that sync rewrites, never one tagged final but still RUNNING.
        self.client.set_terminated(run_id, "FINISHED" if TrialStatus(status).final else "FAILED")
        self._log(run_id, tags=tags)

    def _log(self, run_id: str, *, params=None, metrics=None, tags=None, step: int = 0) -> None:
        from mlflow.entities import (  # lazy: mlflow costs ~9 s at import (python -X importtime, shared CPU)
            Metric,
            Param,
            RunTag,
        )

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, v) for k, v in scrub(params or {}, self.secrets).items()],
            tags=[RunTag(k, v) for k, v in scrub(tags or {}, self.secrets).items()],
        )

    # -- replay --------------------------------------------------------------------------
    def sync(self, ledger: Ledger, configs: dict[str, TrialConfig]) -> int:
        """Make MLflow match the ledger for every trial that ended; returns runs rewritten."""
        tracked = {r.data.tags.get(KEY_TAG): _status_of(r) for r in self._find(ROLE_TAG, ROLE_TRIAL)}
        events = ledger.events()
        ends = {e.key: e for e in events if e.kind == "end"}
        rewritten = 0
        for key, end in ends.items():
            if key not in configs or tracked.get(key) == end.status:
                continue
            run_id = self.trial_run(configs[key], fresh=True)
            for e in latest_attempt(events, key):
                self.log_stage(run_id, e.stage, e.data)
            self.log_trial_artifacts(run_id, configs[key].artifact_dir)
            self.end_trial(run_id, end.status, end.data.get("error"))
            rewritten += 1
        return rewritten


def log_report_folder(client, run_id: str, folder: str | Path) -> None:
    """A written report folder on a sweep's parent run, under ``report/``, tagged so the UI links it."""
    client.log_artifacts(run_id, str(folder), artifact_path="report")
    client.set_tag(run_id, REPORT_TAG, "report/report.html")


def _status_of(run) -> TrialStatus | None:
    tag = run.data.tags.get(STATUS_TAG)
    return TrialStatus(tag) if tag in TrialStatus._value2member_map_ else None


def latest_attempt(events, key: str) -> list:
    """The result events of a trial's last attempt (each attempt starts at stage 0)."""
    mine = [e for e in events if e.key == key and e.kind == "result"]
    starts = [i for i, e in enumerate(mine) if e.stage == 0]
    return mine[starts[-1]:] if starts else mine
