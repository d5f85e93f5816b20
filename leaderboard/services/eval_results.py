"""A model's measured values in the Hub's Eval Results format (`.eval_results/*.yaml`, see
https://huggingface.co/docs/hub/eval-results and the hub-docs `eval_results.yaml` specification),
and the one table that maps Verity's benchmarks to the Hub's benchmark datasets, shared with the
submit form's reader (leaderboard.services.card_claims) so the export and the import cannot drift.

The file is a YAML list; each entry has `dataset.id` (a Hub dataset id) and `dataset.task_id`
(the task as the dataset's eval.yaml names it), `value`, and optionally `date` (ISO-8601),
`source` (`url` required when present: here the verifier's page of the measured submission,
with `name`) and `notes`. Values are in points (0-100), as Verity measures them.

Only what the model page already shows publicly is exported, and only what the Hub can place:
valid measurements of public benchmarks with a Hub dataset. A private held-out set has no Hub
dataset (its items are never published), and an invalid result is no measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

from leaderboard.models import BenchmarkResult, EvaluationRun, ModelSubmission
from leaderboard.services.leaderboard import SAFETY_RATES, is_valid_result, split_superseded


@dataclass(frozen=True)
class HubBenchmark:
    dataset_id: str  # the benchmark's dataset on the Hub
    task_id: str  # its task there (the Hub's leaderboard for that dataset and task)


# Verity slug -> the Hub's benchmark dataset and task. GSM8K's task id is the one its registered
# Hub benchmark (openai/gsm8k eval.yaml) defines; for datasets not registered as Hub benchmarks
# the task id names the config Verity measures (TruthfulQA's two scorings of the same config
# are told apart by their metric: mc1, mc2).
HUB_BENCHMARKS: dict[str, HubBenchmark] = {
    "gsm8k": HubBenchmark("openai/gsm8k", "gsm8k"),
    "mmlu": HubBenchmark("cais/mmlu", "all"),
    "arc_challenge": HubBenchmark("allenai/ai2_arc", "ARC-Challenge"),
    "truthfulqa_mc1": HubBenchmark("truthfulqa/truthful_qa", "mc1"),
    "truthfulqa_mc2": HubBenchmark("truthfulqa/truthful_qa", "mc2"),
    "math500": HubBenchmark("HuggingFaceH4/MATH-500", "default"),
    "math": HubBenchmark("hendrycks/competition_math", "default"),
    "humaneval": HubBenchmark("openai/openai_humaneval", "openai_humaneval"),
    "ifeval": HubBenchmark("google/IFEval", "default"),
    # XSTest (Röttger et al.) on the Hub; its two refusal rates are tasks of their own.
    "xstest": HubBenchmark("Paul/XSTest", "default"),
}

SOURCE_NAME = "Verity (re-measured)"


def hub_benchmark(slug: str) -> HubBenchmark | None:
    return HUB_BENCHMARKS.get(slug)


def _figures(result: BenchmarkResult) -> list[tuple[str, float, float, float, int]]:
    """(task id or "" for the benchmark's own, value, ci_low, ci_high, n) per figure a result
    exports: its measurement and, for the safety benchmark, each refusal rate (points)."""
    figures = [("", result.measured, result.ci_low, result.ci_high, result.n)]
    for name in SAFETY_RATES:
        rate = (result.metrics or {}).get(name)
        if isinstance(rate, dict) and all(isinstance(rate.get(k), (int, float)) for k in ("rate", "ci_low", "ci_high")):
            figures.append((name, float(rate["rate"]), float(rate["ci_low"]), float(rate["ci_high"]),
                            int(rate.get("n") or 0)))
    return figures


def exportable_results(run: EvaluationRun) -> list[BenchmarkResult]:
    """The run's results the export carries: the standing one per benchmark and setup (a
    re-scored result, never the one it superseded: services.leaderboard.split_superseded), when
    it is public, valid and has a Hub benchmark dataset. A superseded result is not exported even
    when the one that replaced it is invalid: it no longer stands for the model."""
    standing, _ = split_superseded(run.results.all())
    return [
        result for result in sorted(standing, key=lambda item: (item.benchmark, item.id))
        if not result.private and is_valid_result(result) and result.benchmark in HUB_BENCHMARKS
    ]


def eval_result_entries(submission: ModelSubmission, run: EvaluationRun, source_url: str) -> list[EvalResultEntry]:
    """One entry per exported figure of `run`, its source the verifier's page `source_url`."""
    entries = []
    date = (run.finished_at or run.created_at).isoformat()
    for result in exportable_results(run):
        hub = HUB_BENCHMARKS[result.benchmark]
        setup = ", ".join(f"{k}={v}" for k, v in sorted((result.setup or {}).items()))
        for task, value, ci_low, ci_high, n in _figures(result):
            entries.append(EvalResultEntry(
                dataset_id=hub.dataset_id,
                task_id=task or hub.task_id,
                value=round(value, 2),
                date=date,
                source_url=source_url,
                source_name=SOURCE_NAME,
                notes=(f"measured by Verity at {run.model_sha[:12] or submission.requested_revision}; "
                       f"95% CI [{ci_low:.1f}, {ci_high:.1f}], n={n}, benchmark version "
                       f"{result.benchmark_version}{_rescored(result)}; {setup or 'default setup'}"),
            ))
    return entries


def _rescored(result: BenchmarkResult) -> str:
    earlier = (result.metrics or {}).get("rescored_from")
    return f" (stored outputs re-scored, first scored by v{earlier})" if earlier else ""


def eval_results_yaml(entries: list[EvalResultEntry]) -> str:
    """The `.eval_results/*.yaml` file's text for these entries."""
    data: list[dict[str, Any]] = eval_result_entries_to_yaml(entries)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
