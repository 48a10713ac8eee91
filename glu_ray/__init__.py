"""glu-ray: width-prune the GLU MLPs of causal LMs and measure what each capability loses."""

from glu_ray.errors import GluRayError
from glu_ray.evaluation.harness import EvalResult, run_suite
from glu_ray.pruning.importance import METRICS, get_metric, metric
from glu_ray.models.loading import check_glu_config, glu_layers, load_model
from glu_ray.evaluation.perplexity import PerplexityResult, fast_perplexity, load_documents
from glu_ray.pruning.prune import PruneReport, Ranking, prune, rank, save_pruned
from glu_ray.evaluation.suites import SUITES, Benchmark, Suite, load_suite
from glu_ray.pruning.widths import TargetWidth, Width, resolve_width

__all__ = [
    "Benchmark",
    "EvalResult",
    "PerplexityResult",
    "SUITES",
    "Suite",
    "fast_perplexity",
    "load_documents",
    "load_suite",
    "run_suite",
    "GluRayError",
    "METRICS",
    "PruneReport",
    "Ranking",
    "TargetWidth",
    "Width",
    "check_glu_config",
    "get_metric",
    "glu_layers",
    "load_model",
    "metric",
    "prune",
    "rank",
    "resolve_width",
    "save_pruned",
]
