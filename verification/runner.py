"""Run one benchmark against one backend and measure it honestly (methods.md §1-§2).

- Items are processed in chunks; all requests of a chunk go to the backend in ONE call, so
  engines with continuous batching schedule them together.
- `done` (index -> SampleRecord from an interrupted attempt) is skipped and merged back;
  `on_records` is called after each chunk so the caller can persist results and resume.
- Failures are never correct. A harness failure (backend exception or per-request error,
  backend call timeout, scorer crash) scores 0 and counts in n_errors; a model answer with
  nothing extractable (or an empty answer) scores 0 and counts in n_unparsed. An error rate
  above 1% marks the run invalid: its number is not a measurement of the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verification import stats
from verification.backends.base import Backend
from verification.benchmarks.base import (
    BenchmarkSpec,
    Item,
    ItemScore,
    Request,
    Response,
    Setup,
    Subsample,
    UnsupportedSetup,
    coerce_subsample,
)
from verification.datasets import datasets_dir_or_default
from verification.records import (
    ChoiceRequest,
    Generation,
    GenerationRequest,
    LoglikelihoodRequest,
    SampleRecord,
)
from verification.report import to_json_safe
from verification.vocabulary import MAX_ERROR_RATE
from verification.interrupts import reraise_interrupt

DEFAULT_CHUNK_SIZE = 256


@dataclass
class BenchmarkOutcome:
    slug: str
    version: str
    setup: dict[str, Any]
    n: int
    n_errors: int
    n_unparsed: int
    measured: float  # points, 0..100
    ci_low: float  # points
    ci_high: float  # points
    se: float  # fraction (SE of the mean score)
    invalid: bool
    dataset_hash: str
    dataset_source: dict[str, Any]
    samples: list[SampleRecord]
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sampling: dict[str, Any] | None = None
    primary_metric: str = "acc"
    backend: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    subsample: dict[str, int] | None = None

    @property
    def error_rate(self) -> float:
        return self.n_errors / self.n if self.n else 0.0

    def as_dict(self, include_samples: bool = True) -> dict[str, Any]:
        data = {
            "slug": self.slug,
            "version": self.version,
            "setup": dict(self.setup),
            "n": self.n,
            "n_errors": self.n_errors,
            "n_unparsed": self.n_unparsed,
            "measured": self.measured,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "se": self.se,
            "invalid": self.invalid,
            "error_rate": self.error_rate,
            "dataset_hash": self.dataset_hash,
            "dataset_source": self.dataset_source,
            "metrics": self.metrics,
            "timings": self.timings,
            "sampling": self.sampling,
            "primary_metric": self.primary_metric,
            "backend": self.backend,
            "limit": self.limit,
            "subsample": self.subsample,
        }
        if include_samples:
            data["samples"] = [s.as_dict() for s in self.samples]
        return to_json_safe(data)


# ---------------------------------------------------------------------------------------------
def _render_prompt(requests: Sequence[Request]) -> str:
    first = requests[0] if requests else None
    if isinstance(first, GenerationRequest):
        return first.prompt
    if isinstance(first, (ChoiceRequest, LoglikelihoodRequest)):
        return first.context
    return ""


def _dispatch(backend: Backend, kind: str, flat: list[Request]) -> list[Response]:
    if kind == "generate":
        return list(backend.generate(flat))  # type: ignore[arg-type]
    if kind == "loglikelihood":
        return list(backend.loglikelihood(flat))  # type: ignore[arg-type]
    if kind == "choice":
        return list(backend.choice_logprobs(flat))  # type: ignore[arg-type]
    raise ValueError(f"unknown request kind {kind!r}")


def _call_backend(
    backend: Backend, kind: str, flat: list[Request], call_timeout_s: float | None
) -> tuple[list[Response] | None, str | None]:
    """One backend call for a whole chunk. Returns (responses, None) or (None, error)."""
    if not flat:
        return [], None
    try:
        if call_timeout_s is None:
            responses = _dispatch(backend, kind, flat)
        else:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verity-backend")
            future = pool.submit(_dispatch, backend, kind, flat)
            try:
                responses = future.result(timeout=call_timeout_s)
            except FutureTimeout:
                return None, f"timeout: backend call exceeded {call_timeout_s:g}s"
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
    except Exception as exc:  # a backend must not raise, but if it does every item errs
        reraise_interrupt(exc)
        return None, f"backend error: {type(exc).__name__}: {exc}"[:500]
    if len(responses) != len(flat):
        return None, f"backend error: {len(responses)} responses for {len(flat)} requests"
    return responses, None


def _response_error(responses: Sequence[Response]) -> str | None:
    for response in responses:
        error = getattr(response, "error", None)
        if error:
            return str(error)
    return None


def _output_text(responses: Sequence[Response]) -> str:
    if responses and isinstance(responses[0], Generation):
        return responses[0].text
    return ""


def _error_record(spec: BenchmarkSpec, item: Item, prompt: str, output: str, error: str) -> SampleRecord:
    return SampleRecord(
        index=item.index, item_id=item.item_id, prompt=prompt, output=output, extracted=None,
        gold=_safe_gold(spec, item), correct=False, score=0.0, error=error,
    )


def _safe_gold(spec: BenchmarkSpec, item: Item) -> str:
    try:
        return spec.gold_text(item)
    except Exception as exc:  # a gold that cannot be rendered is recorded, not fatal here
        reraise_interrupt(exc)
        return f"<gold unavailable: {exc}>"


def _record_from_score(spec: BenchmarkSpec, item: Item, prompt: str, result: ItemScore) -> SampleRecord:
    score = float(result.score) if result.score is not None else 0.0
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"scorer returned an out-of-range score {result.score!r}")
    correct = bool(result.correct) and not result.unparsed
    if result.unparsed:
        score = 0.0
    return SampleRecord(
        index=item.index, item_id=item.item_id, prompt=prompt, output=result.output,
        extracted=result.extracted, gold=_safe_gold(spec, item), correct=correct, score=score,
        unparsed=bool(result.unparsed), details=dict(result.details),
    )


def _score_chunk(
    spec: BenchmarkSpec,
    items: list[Item],
    per_item_requests: list[list[Request]],
    per_item_responses: list[list[Response]] | None,
    chunk_error: str | None,
) -> tuple[list[SampleRecord], list[ItemScore | None]]:
    records: list[SampleRecord | None] = [None] * len(items)
    scores: list[ItemScore | None] = [None] * len(items)
    to_score: list[int] = []
    for pos, item in enumerate(items):
        prompt = _render_prompt(per_item_requests[pos])
        if chunk_error is not None or per_item_responses is None:
            records[pos] = _error_record(spec, item, prompt, "", chunk_error or "no response")
            continue
        responses = per_item_responses[pos]
        error = _response_error(responses)
        if error:
            records[pos] = _error_record(spec, item, prompt, _output_text(responses), error)
            continue
        if spec.request_kind == "generate" and not _output_text(responses).strip():
            # The model answered nothing: its failure (unparsed), not the harness's.
            records[pos] = SampleRecord(item.index, item.item_id, prompt, _output_text(responses), None,
                                        _safe_gold(spec, item), False, 0.0, unparsed=True,
                                        details={"empty_output": True})
            scores[pos] = ItemScore(False, 0.0, None, _output_text(responses), unparsed=True)
            continue
        to_score.append(pos)
    if to_score:
        results = spec.score_batch(
            [items[p] for p in to_score],
            [per_item_requests[p] for p in to_score],
            [per_item_responses[p] for p in to_score],  # type: ignore[index]
        )
        for pos, result in zip(to_score, results):
            item, prompt = items[pos], _render_prompt(per_item_requests[pos])
            if isinstance(result, BaseException):
                records[pos] = _error_record(spec, item, prompt, _output_text(per_item_responses[pos]),  # type: ignore[index]
                                             f"scorer error: {type(result).__name__}: {result}"[:500])
                continue
            try:
                records[pos] = _record_from_score(spec, item, prompt, result)
                scores[pos] = result
            except Exception as exc:
                reraise_interrupt(exc)
                records[pos] = _error_record(spec, item, prompt, result.output, f"scorer error: {exc}"[:500])
    return [r for r in records if r is not None], scores


def _item_score_from_record(record: SampleRecord) -> ItemScore | None:
    """Rebuild what secondary metrics need from a record of an earlier attempt."""
    if record.error:
        return None
    return ItemScore(record.correct, record.score, record.extracted, record.output,
                     unparsed=record.unparsed, details=dict(record.details))


def run_benchmark(
    spec: BenchmarkSpec,
    backend: Backend,
    *,
    setup: Setup | dict[str, Any] | None = None,
    limit: int | None = None,
    subsample: Subsample | int | tuple[int, int] | None = None,
    datasets_dir: str | Path | None = None,
    done: Mapping[int, SampleRecord] | None = None,
    on_records: Callable[[list[SampleRecord]], None] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[int, int], None] | None = None,
    call_timeout_s: float | None = None,
) -> BenchmarkOutcome:
    """Evaluate `spec` with `backend` and return the measured outcome (see module docstring).

    `call_timeout_s`: optional watchdog on each backend call; a call that runs longer makes the
    chunk's items errors (the call is abandoned, not killed: backends keep their own timeouts)."""
    started = time.monotonic()
    setup = _checked_setup(spec, setup)
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    data_dir = datasets_dir_or_default(datasets_dir)
    loaded = spec.load(data_dir, limit=limit, subsample=subsample)
    context = spec.prepare(data_dir, setup)
    load_s = time.monotonic() - started

    known_indices = {item.index for item in loaded.items}
    previous = {i: r for i, r in dict(done or {}).items() if i in known_indices}
    todo = [item for item in loaded.items if item.index not in previous]
    if progress:
        progress(len(previous), len(loaded.items))
    scored = _ChunkScorer(spec, backend, setup, context, call_timeout_s)
    scored.run(todo, chunk_size, on_records, progress, len(previous), len(loaded.items))

    samples, scores_in_order = _in_item_order(loaded.items, previous, scored)
    outcome = _aggregate(spec, setup, loaded.items, samples, scores_in_order)
    _describe_run(outcome, spec, setup, backend, loaded, limit, subsample)
    total_s = time.monotonic() - started
    outcome.timings = {
        "load_s": load_s, "backend_s": scored.backend_s, "scoring_s": scored.scoring_s, "total_s": total_s,
        "items_scored_now": float(len(todo)),
        "items_per_s": len(todo) / total_s if total_s > 0 else 0.0,
    }
    return outcome


def _checked_setup(spec: BenchmarkSpec, setup: Setup | dict[str, Any] | None) -> Setup:
    """The setup to run (the spec's default when none is given); refuses one the spec cannot run."""
    if isinstance(setup, dict):
        setup = Setup.from_dict(setup)
    setup = setup or spec.default_setup
    reason = spec.unsupported_reason(setup)
    if reason is not None:
        raise UnsupportedSetup(f"{spec.slug}: {reason}")
    return setup


class _ChunkScorer:
    """Sends the items still to do to the backend chunk by chunk and scores each chunk, keeping
    the new records and scores by item index and the time spent in the backend and in scoring."""

    def __init__(
        self, spec: BenchmarkSpec, backend: Backend, setup: Setup, context: Any, call_timeout_s: float | None
    ):
        self.spec, self.backend, self.setup, self.context = spec, backend, setup, context
        self.call_timeout_s = call_timeout_s
        self.records: dict[int, SampleRecord] = {}
        self.scores: dict[int, ItemScore | None] = {}
        self.backend_s = 0.0
        self.scoring_s = 0.0

    def run(
        self,
        todo: list[Item],
        chunk_size: int,
        on_records: Callable[[list[SampleRecord]], None] | None,
        progress: Callable[[int, int], None] | None,
        finished: int,
        total: int,
    ) -> None:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            records = self.score_chunk(chunk)
            if on_records:
                on_records(records)
            finished += len(chunk)
            if progress:
                progress(finished, total)

    def score_chunk(self, chunk: list[Item]) -> list[SampleRecord]:
        spec = self.spec
        per_item_requests = [spec.build_requests(item, self.setup, self.context) for item in chunk]
        flat = [req for reqs in per_item_requests for req in reqs]
        t0 = time.monotonic()
        responses, chunk_error = _call_backend(self.backend, spec.request_kind, flat, self.call_timeout_s)
        self.backend_s += time.monotonic() - t0
        per_item_responses = _split_responses(responses, per_item_requests)
        t0 = time.monotonic()
        records, scores = _score_chunk(spec, chunk, per_item_requests, per_item_responses, chunk_error)
        self.scoring_s += time.monotonic() - t0
        for item, record, score in zip(chunk, records, scores):
            self.records[item.index] = record
            self.scores[item.index] = score
        return records


def _split_responses(
    responses: list[Response] | None, per_item_requests: list[list[Request]]
) -> list[list[Response]] | None:
    """The flat list of one backend call cut back into each item's responses."""
    if responses is None:
        return None
    per_item: list[list[Response]] = []
    pos = 0
    for reqs in per_item_requests:
        per_item.append(responses[pos : pos + len(reqs)])
        pos += len(reqs)
    return per_item


def _in_item_order(
    items: list[Item], previous: Mapping[int, SampleRecord], scored: _ChunkScorer
) -> tuple[list[SampleRecord], list[ItemScore | None]]:
    """Records and scores of every item in dataset order, earlier attempts' and this one's merged."""
    samples: list[SampleRecord] = []
    scores_in_order: list[ItemScore | None] = []
    for item in items:
        if item.index in previous:
            samples.append(previous[item.index])
            scores_in_order.append(_item_score_from_record(previous[item.index]))
        else:
            samples.append(scored.records[item.index])
            scores_in_order.append(scored.scores[item.index])
    return samples, scores_in_order


def _describe_run(
    outcome: BenchmarkOutcome,
    spec: BenchmarkSpec,
    setup: Setup,
    backend: Backend,
    loaded: Any,
    limit: int | None,
    subsample: Subsample | int | tuple[int, int] | None,
) -> None:
    """The run record on the outcome: dataset, sampling parameters, backend, limit, subsample."""
    outcome.dataset_hash = loaded.content_hash
    outcome.dataset_source = loaded.source
    params = spec.sampling_params(setup)
    outcome.sampling = params.as_dict() if params is not None else None
    outcome.backend = backend.describe()
    outcome.limit = limit
    sub = coerce_subsample(subsample)
    outcome.subsample = {"n": sub.n, "seed": sub.seed} if sub else None


def _aggregate(
    spec: BenchmarkSpec, setup: Setup, items: list[Item], samples: list[SampleRecord],
    scores: list[ItemScore | None],
) -> BenchmarkOutcome:
    n = len(samples)
    values = [0.0 if (s.error or s.unparsed) else float(s.score) for s in samples]
    total = sum(values)
    p_hat = total / n if n else 0.0
    clusters = [item.group or item.item_id for item in items] if spec.clustered else None
    se = stats.standard_error(values, clusters=clusters) if n else 0.0
    low, high = stats.wilson_interval(total, n) if n else (0.0, 1.0)
    n_errors = sum(1 for s in samples if s.error)
    n_unparsed = sum(1 for s in samples if s.unparsed and not s.error)
    metrics = {spec.primary_metric: 100.0 * p_hat}
    metrics.update(spec.secondary_metrics(scores, items))
    return BenchmarkOutcome(
        slug=spec.slug, version=spec.version, setup=setup.as_dict(), n=n, n_errors=n_errors,
        n_unparsed=n_unparsed, measured=100.0 * p_hat, ci_low=100.0 * low, ci_high=100.0 * high,
        se=se, invalid=(n_errors / n > MAX_ERROR_RATE) if n else False, dataset_hash="",
        dataset_source={}, samples=samples, metrics=metrics, primary_metric=spec.primary_metric,
    )
