"""The verification pipeline as plain functions: intake -> plan -> fetch -> measure -> compare ->
checks -> report. The `verify` CLI runs them in one process; the Celery tasks
(leaderboard.services.pipeline) run the same functions across tasks with database-backed hooks
for progress, per-item persistence and resume.

Nothing here imports Django: persistence goes through `MeasureHooks`.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from verification import intake as intake_mod
from verification.checks import Check, CheckContext, ModelRef, run_checks
from verification.claims import ClaimsDoc
from verification.compare import Measurement, base_section, compare
from verification.modelcache import ModelCache
from verification.records import SampleRecord
from verification.report import build_report

log = logging.getLogger(__name__)

# Measured for every submission besides what it claims: cheap, standard, comparable.
CORE_BENCHMARKS: tuple[str, ...] = ("gsm8k", "mmlu", "arc_challenge")
CODE_VERSION = "verity-pipeline/1"


@dataclass(frozen=True)
class PlannedBenchmark:
    slug: str
    version: str
    setup: dict[str, Any]  # full setup (shots, cot, chat_template)
    note: str | None = None  # why the setup differs from the claim, if it does
    # gsm_fresh's generator seed, chosen when planning and stored with the run so a resumed run
    # (and the base measured for the same submission) gets exactly the same fresh items.
    seed: int | None = None

    @property
    def setup_key(self) -> str:
        from verification.benchmarks.base import Setup

        return Setup.from_dict(self.setup).key()

    def as_dict(self) -> dict[str, Any]:
        out = {"slug": self.slug, "version": self.version, "setup": self.setup, "note": self.note}
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannedBenchmark:
        seed = data.get("seed")
        return cls(
            data["slug"],
            data["version"],
            dict(data["setup"]),
            data.get("note"),
            int(seed) if seed is not None else None,
        )

    @property
    def private(self) -> bool:
        from verification.private_sets import is_private

        return is_private(self.slug)


class MeasureHooks:
    """Persistence seen by the measuring loop. The default keeps nothing (a CLI run); the
    service subclasses it to write SampleResult rows and EvaluationRun progress."""

    def done_records(self, plan: PlannedBenchmark) -> list[SampleRecord]:
        """Items already scored by an earlier, interrupted attempt (resume from here)."""
        return []

    def save_records(self, plan: PlannedBenchmark, records: list[SampleRecord]) -> None:
        """Called with each finished chunk of items, before the next chunk starts."""

    def progress(self, done: int, total: int, benchmark: str, step: str) -> None:
        """Items done out of the run's total, the benchmark and the step being worked on."""

    def step(self, step: str) -> None:
        """A coarse pipeline step for the run log (resolving, downloading, measuring, …)."""


# --- planning -------------------------------------------------------------------------------------


def plan_benchmarks(
    claims: ClaimsDoc,
    explicit: Sequence[str] | None = None,
    core: Sequence[str] = CORE_BENCHMARKS,
    private: Sequence[str] = (),
) -> list[PlannedBenchmark]:
    """Every claimed benchmark under its claimed setup (when the spec supports it) plus the core
    set under the standard setup; `explicit` (--benchmarks) replaces the list of slugs.

    Held-out sets are added to the standard plan: gsm_fresh whenever gsm8k is measured (the
    held-out gap compares the two), and every registered private set in `private` (the
    maintainers' held-out test is measured for every submission)."""
    from verification.benchmarks import gsm_fresh
    from verification.benchmarks.base import Setup

    claimed = claims.by_benchmark()
    slugs = list(explicit) if explicit else list(dict.fromkeys([*claimed, *core]))
    if not explicit:
        if "gsm8k" in slugs:
            slugs.append(gsm_fresh.SLUG)
        slugs.extend(private)
        slugs = list(dict.fromkeys(slugs))
    planned: list[PlannedBenchmark] = []
    for slug in slugs:
        seed = gsm_fresh.new_seed() if slug == gsm_fresh.SLUG else None
        spec = spec_for_slug(slug, seed)
        setup = spec.default_setup
        note = None
        claim = claimed.get(slug)
        if claim is not None and claim.setup():
            wanted = Setup.from_dict({**spec.default_setup.as_dict(), **claim.setup()})
            reason = spec.unsupported_reason(wanted)
            if reason is None:
                setup = wanted
            else:
                note = f"claimed setup {claim.setup()} not supported ({reason}); measured under {setup.as_dict()}"
        planned.append(PlannedBenchmark(slug, spec.version, setup.as_dict(), note, seed))
    return planned


def spec_for_slug(slug: str, seed: int | None = None) -> Any:
    """The spec to measure: gsm_fresh is built for its recorded seed (same items on resume and
    for the base); everything else comes from the registry (private sets are registered there
    by `private_sets.register_all`)."""
    from verification.benchmarks import gsm_fresh, registry

    if slug == gsm_fresh.SLUG:
        return gsm_fresh.spec(seed)
    return registry.get(slug)


def spec_for_plan(p: PlannedBenchmark) -> Any:
    return spec_for_slug(p.slug, p.seed)


def register_private_sets(directory: str | Path | None) -> list[str]:
    """Register every stored private set; returns their slugs ([] when there is no store)."""
    from verification import private_sets

    if not directory or not Path(directory).is_dir():
        return []
    return private_sets.register_all(directory)


class PrivateBenchmarkError(RuntimeError):
    """Measuring a private set failed; the message names the exception type only."""


# --- fetching -------------------------------------------------------------------------------------


@contextmanager
def model_files(result: intake_mod.IntakeResult, cache: ModelCache | None) -> Iterator[Path]:
    """A local directory with the model's files for the duration of the block: a local source
    as is, a hub source from the model cache (downloaded at the pinned sha if missing)."""
    if result.kind == "local":
        yield Path(result.local_path or result.source)
        return
    assert result.repo_id and result.sha
    if cache is None:
        if result.local_path:  # offline snapshot in the HF cache
            yield Path(result.local_path)
            return
        raise ValueError("a hub model needs a model cache to be downloaded into")
    download_bytes = sum(result.files[name] for name in result.download_files)
    with cache.use(result.repo_id, result.sha, intake_mod.download_patterns(result), download_bytes) as path:
        yield path


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class MeasureOutcome:
    measurements: dict[str, Measurement]
    run_info: dict[str, Any] = field(default_factory=dict)


def measure_model(
    model_path: Path,
    plan: Sequence[PlannedBenchmark],
    *,
    backend: Any,
    datasets_dir: Path,
    limit: int | None,
    hooks: MeasureHooks | None = None,
    chunk_size: int | None = None,
) -> MeasureOutcome:
    """Run every planned benchmark on an open backend through the engine's runner, resuming from
    the items the hooks already stored and handing each finished chunk back to them."""
    from verification import private_sets, runner

    hooks = hooks or MeasureHooks()
    chunk = chunk_size or default_chunk_size()
    specs = {p.slug: spec_for_plan(p) for p in plan}
    sizes = {p.slug: len(specs[p.slug].load(datasets_dir, limit=limit).items) for p in plan}
    total = sum(sizes.values())
    offset = 0
    measurements: dict[str, Measurement] = {}
    timings: dict[str, Any] = {}
    dataset_hashes: dict[str, str] = {}
    sampling: dict[str, Any] = {}
    for p in plan:
        done = {record.index: record for record in hooks.done_records(p)}
        step = f"measuring {p.slug}" + (f" (resuming after {len(done)} stored items)" if done else "")
        hooks.step(step)

        def progress(finished: int, _total: int, _offset: int = offset, _slug: str = p.slug) -> None:
            hooks.progress(_offset + finished, total, _slug, f"measuring {_slug}")

        def on_records(records: list[SampleRecord], _p: PlannedBenchmark = p) -> None:
            hooks.save_records(_p, records)

        try:
            outcome = runner.run_benchmark(
                specs[p.slug],
                backend,
                setup=_setup(p),
                limit=limit,
                datasets_dir=datasets_dir,
                done=done,
                on_records=on_records,
                chunk_size=chunk,
                progress=progress,
            )
        except Exception as exc:
            if not p.private:
                raise
            # The original message may quote an item: only its type leaves this frame, and the
            # chained traceback is suppressed so logs cannot print it either.
            raise PrivateBenchmarkError(f"{p.slug}: {private_sets.safe_error(exc)}") from None
        offset += sizes[p.slug]
        timings[p.slug] = outcome.timings
        dataset_hashes[p.slug] = outcome.dataset_hash
        sampling[p.slug] = outcome.sampling or {"kind": specs[p.slug].request_kind}
        measurements[p.slug] = _measurement(p, outcome)
    hooks.progress(total, total, "", "measured")
    return MeasureOutcome(
        measurements,
        {"timings_s": timings, "dataset_hashes": dataset_hashes, "sampling_params": sampling, "items": total},
    )


def default_chunk_size() -> int:
    """Items per backend call and per persisted chunk: big enough to batch, small enough that a
    crash loses little work."""
    return int(os.environ.get("VERITY_CHUNK_SIZE") or 64)


def _setup(p: PlannedBenchmark) -> Any:
    from verification.benchmarks.base import Setup

    return Setup.from_dict(p.setup)


def _measurement(p: PlannedBenchmark, outcome: Any) -> Measurement:
    return Measurement(
        benchmark=p.slug,
        version=outcome.version,
        setup=dict(outcome.setup),
        measured=outcome.measured,
        ci_low=min(outcome.ci_low, outcome.measured),
        ci_high=max(outcome.ci_high, outcome.measured),
        n=outcome.n,
        n_errors=outcome.n_errors,
        n_unparsed=outcome.n_unparsed,
        se=outcome.se,
        dataset_hash=outcome.dataset_hash,
        item_correct={s.index: bool(s.correct) and not s.error for s in outcome.samples},
        setup_note=p.note,
        metrics={k: v for k, v in outcome.metrics.items() if isinstance(v, (int, float, str, bool))},
    )


# vLLM's context window for measurement: enough for few-shot prompts plus the answer; never more
# than the model was built for (vLLM refuses a window beyond max_position_embeddings).
VLLM_MAX_MODEL_LEN = 4096


def open_backend(kind: str, model_path: Path, *, sha: str | None, repo_id: str | None) -> Any:
    from verification.backends import make_backend

    options: dict[str, Any] = {"model_sha": sha, "repo_id": repo_id}
    if kind == "vllm":
        options["max_model_len"] = min(VLLM_MAX_MODEL_LEN, _model_context(model_path) or VLLM_MAX_MODEL_LEN)
    return make_backend(kind, str(model_path), **options)


def _model_context(model_path: Path) -> int | None:
    import json

    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


# --- the whole thing, in one process --------------------------------------------------------------


@dataclass
class VerifyRequest:
    source: str
    revision: str | None = None
    claims: ClaimsDoc = field(default_factory=ClaimsDoc)
    base: str | None = None
    endpoint: str | None = None
    endpoint_model: str | None = None
    benchmarks: list[str] | None = None
    limit: int | None = None
    backend: str = "transformers"
    candidates: list[str] = field(default_factory=list)
    datasets_dir: Path | None = None
    max_model_bytes: int | None = None
    # Stored private held-out sets to measure as well (None: none).
    private_dir: Path | None = None
    # Passed to the checks as CheckContext.options (e.g. endpoint_allow_loopback for the CLI).
    check_options: dict[str, Any] = field(default_factory=dict)


def verify(
    request: VerifyRequest,
    *,
    cache: ModelCache | None = None,
    hooks: MeasureHooks | None = None,
    checks: Sequence[Check] | None = None,
    warm_backends: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the pipeline end to end and return the verity.report/1 document.

    `warm_backends` maps a snapshot sha to an engine the caller already holds open on exactly
    that snapshot (a long-lived worker's warm vLLM engine); it is used instead of starting a new
    one and left open. Raises intake.IntakeRefused when the submitted model is refused (nothing
    measured)."""
    hooks = hooks or MeasureHooks()
    started = time.monotonic()
    timings: dict[str, Any] = {}
    hooks.step("intake")
    model_intake = intake_mod.inspect_source(request.source, request.revision, request.max_model_bytes)
    timings["intake_s"] = round(time.monotonic() - started, 3)
    base_source = request.base or request.claims.base_model
    base_intake, base_error = _base_intake(base_source, request.max_model_bytes)
    plan = plan_benchmarks(
        request.claims, request.benchmarks, private=register_private_sets(request.private_dir)
    )
    datasets_dir = request.datasets_dir or _default_datasets_dir()
    run_info: dict[str, Any] = {
        "code_version": CODE_VERSION,
        "backend": request.backend,
        "plan": [p.as_dict() for p in plan],
        "limit": request.limit,
        "python": platform.python_version(),
    }
    with ExitStack() as stack:
        hooks.step("fetch model")
        model_path = stack.enter_context(model_files(model_intake, cache))
        hooks.step(f"start {request.backend} backend")
        backend = _backend_for(request.backend, model_path, model_intake, warm_backends, stack)
        run_info["backend_info"] = describe_backend(backend)
        measured = measure_model(
            model_path, plan, backend=backend, datasets_dir=datasets_dir, limit=request.limit, hooks=hooks
        )
        run_info.update(measured.run_info)
        base_measured: dict[str, Measurement] | None = None
        base_path: Path | None = None
        if base_intake is not None:
            hooks.step("measure claimed base")
            base_path = stack.enter_context(model_files(base_intake, cache))
            with ExitStack() as base_stack:  # the base engine is released before the checks
                base_backend = _backend_for(
                    request.backend, base_path, base_intake, warm_backends, base_stack
                )
                base_out = measure_model(
                    base_path,
                    plan,
                    backend=base_backend,
                    datasets_dir=datasets_dir,
                    limit=request.limit,
                    hooks=None,
                )
            base_measured = base_out.measurements
            run_info["base_timings_s"] = base_out.run_info["timings_s"]
        benchmarks, flags = compare(measured.measurements, request.claims, base_measured)
        hooks.step("checks")
        context = CheckContext(
            model=_ref(model_intake, model_path),
            base=_ref(base_intake, base_path) if base_intake else None,
            candidates=_candidate_refs(request.candidates, cache, stack),
            claims=request.claims,
            intake=model_intake.hygiene(),
            benchmarks=benchmarks,
            base_benchmarks=base_section(base_measured),
            endpoint_url=request.endpoint or request.claims.endpoint,
            endpoint_model=request.endpoint_model or request.claims.endpoint_model,
            datasets_dir=datasets_dir,
            backend_name=request.backend,
            backend=backend,
            limit=request.limit,
            options={**check_options_for_plan(plan), **request.check_options},
        )
        sections, check_flags, check_log = run_checks(context, checks)
    run_info["checks"] = check_log
    if base_error:
        run_info["base_error"] = base_error
    timings["total_s"] = round(time.monotonic() - started, 3)
    run_info["timings"] = timings
    return build_report(
        source=request.source,
        revision=model_intake.sha,
        claimed_base=base_source,
        intake=model_intake.hygiene(),
        benchmarks=benchmarks,
        base=base_section(base_measured),
        sections=sections,
        flags=flags + check_flags,
        run=run_info,
    )


def check_options_for_plan(plan: Sequence[PlannedBenchmark]) -> dict[str, Any]:
    """What the checks need to know about the plan: the seed gsm_fresh was generated with."""
    from verification.benchmarks import gsm_fresh

    seeds = [p.seed for p in plan if p.slug == gsm_fresh.SLUG and p.seed is not None]
    return {"gsm_fresh_seed": seeds[0]} if seeds else {}


def _backend_for(
    kind: str,
    path: Path,
    result: intake_mod.IntakeResult,
    warm_backends: Mapping[str, Any] | None,
    stack: ExitStack,
) -> Any:
    """A warm engine for this exact sha when the caller has one (left open), else a new one
    closed with `stack`."""
    warm = (warm_backends or {}).get(result.sha or "")
    if warm is not None:
        return warm
    backend = open_backend(kind, path, sha=result.sha, repo_id=result.repo_id)
    stack.callback(backend.close)
    return backend


def _base_intake(
    base_source: str | None, max_bytes: int | None
) -> tuple[intake_mod.IntakeResult | None, str | None]:
    """The claimed base goes through the same guards; a refused base is reported, not fatal."""
    if not base_source:
        return None, None
    try:
        return intake_mod.inspect_source(base_source, None, max_bytes), None
    except intake_mod.IntakeRefused as refused:
        return None, f"claimed base {base_source} not measured: {refused.reason}"


def _candidate_refs(candidates: Sequence[str], cache: ModelCache | None, stack: ExitStack) -> list[ModelRef]:
    refs: list[ModelRef] = []
    for candidate in candidates:
        try:
            result = intake_mod.inspect_source(candidate, None, None)
        except intake_mod.IntakeRefused as refused:
            refs.append(ModelRef(candidate, None, None, None))
            log.warning("candidate %s unavailable: %s", candidate, refused.reason)
            continue
        refs.append(_ref(result, stack.enter_context(model_files(result, cache))))
    return refs


def _ref(result: intake_mod.IntakeResult, path: Path | None) -> ModelRef:
    return ModelRef(result.source, result.repo_id, result.sha, path)


def describe_backend(backend: Any) -> dict[str, Any]:
    try:
        return dict(backend.describe())
    except Exception as exc:  # describing must never fail a run
        return {"backend": getattr(backend, "name", "?"), "describe_error": str(exc)}


def _default_datasets_dir() -> Path:
    from verification.datasets import datasets_dir_from_env

    return datasets_dir_from_env()
