"""The verification pipeline as three named steps over plain data (no Django import):

    prepare(...)  -> Preparation     pin and inspect the model and its claimed base; plan the benchmarks
    measure(...)  -> MeasureOutcome  measure one model on its plan (one run)
    conclude(...) -> report          compare claims with measurements, run the checks, build the report

`verify` runs the three in one process (the CLI). The Celery workers run exactly one step per
task (workers/steps.py) and persist between them: `MeasureHooks` stores items as they are scored
so an interrupted run resumes, and the intake results travel as plain dicts so no step asks the
Hub again for what an earlier step already pinned.
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from verification import intake as intake_mod
from verification import private_sets
from verification.benchmarks import gsm_fresh, registry
from verification.benchmarks.base import Setup
from verification.benchmarks.humaneval import NoSandbox
from verification.checks import CHECK_PATHS, Check, CheckContext, ModelRef, run_checks
from verification.claims import ClaimsDoc
from verification.compare import Measurement, base_section, compare
from verification.config import DEFAULT_CORE_BENCHMARKS, Pool
from verification.datasets import datasets_dir_or_default
from verification.interrupts import reraise_interrupt
from verification.modelcache import ModelCache
from verification.placement import DownloadPlan, Placement, place, plan_download
from verification.records import SampleRecord
from verification.report import build_report
from verification.safety.assessment import assess_safety
from verification.vocabulary import REPORT_SECTIONS

log = logging.getLogger(__name__)

# vLLM's context window for measurement: enough for few-shot prompts plus the answer; never more
# than the model was built for (vLLM refuses a window beyond max_position_embeddings).
DEFAULT_CONTEXT_WINDOW = 4096
DEFAULT_CHUNK_SIZE = 64


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
        return Setup.from_dict(self.setup).key()

    @property
    def private(self) -> bool:
        return private_sets.is_private(self.slug)

    def as_dict(self) -> dict[str, Any]:
        out = {"slug": self.slug, "version": self.version, "setup": self.setup, "note": self.note}
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannedBenchmark:
        seed = data.get("seed")
        return cls(
            data["slug"], data["version"], dict(data["setup"]), data.get("note"), int(seed) if seed is not None else None
        )


class MeasureHooks:
    """Persistence seen by the measuring loop. The default keeps nothing (a CLI run); the
    workers subclass it to write per-item rows and run progress."""

    def done_records(self, plan: PlannedBenchmark) -> list[SampleRecord]:
        """Items already scored by an earlier, interrupted attempt (resume from here)."""
        return []

    def save_records(self, plan: PlannedBenchmark, records: list[SampleRecord]) -> None:
        """Called with each finished chunk of items, before the next chunk starts."""

    def progress(self, done: int, total: int, benchmark: str, step: str) -> None:
        """Items done out of the run's total, the benchmark and the step being worked on."""

    def step(self, step: str) -> None:
        """A coarse pipeline step for the run log (resolving, downloading, measuring, …)."""


class PrivateBenchmarkError(RuntimeError):
    """Measuring a private set failed; the message names the exception type only."""


# --- planning -------------------------------------------------------------------------------------


def plan_benchmarks(
    claims: ClaimsDoc,
    explicit: Sequence[str] | None = None,
    core: Sequence[str] = DEFAULT_CORE_BENCHMARKS,
    private: Sequence[str] = (),
) -> list[PlannedBenchmark]:
    """Every claimed benchmark under its claimed setup (when the spec supports it) plus the core
    set under the standard setup; `explicit` (--benchmarks) replaces the list of slugs.

    Held-out sets are added to the standard plan: gsm_fresh whenever gsm8k is measured (the
    held-out gap compares the two), and every registered private set in `private` (the
    maintainers' held-out test is measured for every submission). A held-out set is measured
    under the same setup as its public counterpart in the plan (`_like_counterpart`): the gap
    compares like with like."""
    claimed = claims.by_benchmark()
    slugs = list(explicit) if explicit else list(dict.fromkeys([*claimed, *core]))
    if not explicit:
        if "gsm8k" in slugs:
            slugs.append(gsm_fresh.SLUG)
        slugs = list(dict.fromkeys([*slugs, *private]))
    plan = [_plan_one(slug, claimed.get(slug)) for slug in slugs]
    by_slug = {p.slug: p for p in plan}
    return [_like_counterpart(p, by_slug) for p in plan]


def _plan_one(slug: str, claim: Any) -> PlannedBenchmark:
    seed = gsm_fresh.new_seed() if slug == gsm_fresh.SLUG else None
    spec = spec_for_slug(slug, seed)
    setup = spec.default_setup
    note = None
    if claim is not None and claim.setup():
        wanted = Setup.from_dict({**spec.default_setup.as_dict(), **claim.setup()})
        reason = spec.unsupported_reason(wanted)
        if reason is None:
            setup = wanted
        else:
            note = f"claimed setup {claim.setup()} not supported ({reason}); measured under {setup.as_dict()}"
    return PlannedBenchmark(slug, spec.version, setup.as_dict(), note, seed)


def _like_counterpart(p: PlannedBenchmark, by_slug: Mapping[str, PlannedBenchmark]) -> PlannedBenchmark:
    """A held-out set (a spec with a `public_counterpart`) takes its counterpart's planned setup;
    when its spec cannot run that setup it keeps its own and the note says the gap compares
    unlike setups."""
    spec = spec_for_plan(p)
    counterpart = by_slug.get(getattr(spec, "public_counterpart", None) or "")
    if counterpart is None or counterpart.setup == p.setup:
        return p
    reason = spec.unsupported_reason(Setup.from_dict(counterpart.setup))
    if reason is None:
        return replace(p, setup=dict(counterpart.setup))
    note = f"{counterpart.slug}'s setup {counterpart.setup} not supported here ({reason}): held-out gap not like with like"
    return replace(p, note=note)


def spec_for_slug(slug: str, seed: int | None = None) -> Any:
    """The spec to measure: gsm_fresh is built for its recorded seed (same items on resume and
    for the base); everything else comes from the registry (private sets are registered there
    by `private_sets.register_all`)."""
    if slug == gsm_fresh.SLUG:
        return gsm_fresh.spec(seed)
    return registry.get(slug)


def spec_for_plan(p: PlannedBenchmark) -> Any:
    """The spec a planned benchmark is measured with (its seed included)."""
    return spec_for_slug(p.slug, p.seed)


def register_private_sets(directory: str | Path | None) -> list[str]:
    """Register every stored private set; returns their slugs ([] when there is no store)."""
    if not directory or not Path(directory).is_dir():
        return []
    return private_sets.register_all(directory)


def check_options_for_plan(plan: Sequence[PlannedBenchmark]) -> dict[str, Any]:
    """What the checks need to know about the plan: the seed gsm_fresh was generated with."""
    seeds = [p.seed for p in plan if p.slug == gsm_fresh.SLUG and p.seed is not None]
    return {"gsm_fresh_seed": seeds[0]} if seeds else {}


# --- step 1: prepare ------------------------------------------------------------------------------


@dataclass
class Preparation:
    """The pinned, inspected model (and claimed base) and the plan: everything decided before
    any weights are fetched. With worker pools configured, the pool each one is measured on;
    with a model cache budget, each hub model's download plan (files, bytes, shards)."""

    model: intake_mod.IntakeResult
    base: intake_mod.IntakeResult | None
    base_error: str | None
    plan: list[PlannedBenchmark]
    placement: Placement | None = None
    base_placement: Placement | None = None
    download: DownloadPlan | None = None
    base_download: DownloadPlan | None = None

    def intake_record(self) -> dict[str, Any]:
        """The submission's intake record: the model's hygiene facts, the pinned shas, why the
        claimed base is not measured (if so), the placement and the download plans."""
        return {
            **self.model.hygiene(),
            "sha": self.model.sha,
            "base_sha": self.base.sha if self.base else None,
            **({"base_error": self.base_error} if self.base_error else {}),
            **({"placement": self.placement.as_dict()} if self.placement else {}),
            **({"download": download_record(self.download)} if self.download else {}),
            **({"base_download": download_record(self.base_download)} if self.base_download else {}),
        }


def prepare(
    source: str,
    revision: str | None,
    claims: ClaimsDoc,
    *,
    base: str | None = None,
    benchmarks: Sequence[str] | None = None,
    core: Sequence[str] = DEFAULT_CORE_BENCHMARKS,
    private: Sequence[str] = (),
    max_model_bytes: int | None = None,
    token: str | None = None,
    pools: Sequence[Pool] = (),
    cache_budget_bytes: int | None = None,
) -> Preparation:
    """Pin the model and run the intake guards (raises IntakeRefused / TransientHubError), pin the
    claimed base through the same guards (a refused base is reported, not fatal), and plan.
    Before anything is downloaded, both are placed by size (with `pools`) and a hub model's
    download is planned against the model cache (`cache_budget_bytes`): a model that fits no pool
    or not the cache is refused; such a base is reported."""
    model = intake_mod.inspect_source(source, revision, max_model_bytes, token=token)
    placement, download = place_model(model, pools, cache_budget_bytes)
    base_intake, base_error, base_placement, base_download = None, None, None, None
    base_source = base or claims.base_model
    if base_source:
        try:
            base_intake = intake_mod.inspect_source(base_source, None, max_model_bytes, token=token)
            base_placement, base_download = place_model(base_intake, pools, cache_budget_bytes)
        except intake_mod.IntakeRefused as refused:
            base_intake, base_error = None, f"claimed base {base_source} not measured: {refused.reason}"
    plan = plan_benchmarks(claims, benchmarks, core, private)
    return Preparation(model, base_intake, base_error, plan, placement, base_placement, download, base_download)


def place_model(
    model: intake_mod.IntakeResult, pools: Sequence[Pool], cache_budget_bytes: int | None
) -> tuple[Placement | None, DownloadPlan | None]:
    """(the pool that measures the model or None without pools, its download plan or None). A
    hub model's download is planned against the cache budget; a local one is placed by size only
    (nothing to fetch)."""
    if model.kind == "local" or cache_budget_bytes is None:
        return (place(model, pools) if pools else None), None
    download = plan_download(model, pools, cache_budget_bytes)
    return download.placement, download


def download_record(download: DownloadPlan) -> dict[str, Any]:
    """A download plan as the submission and its runs keep it (and the run page shows it): only
    a plan that fits is ever made, so it says what it fits in (the cache budget, the pool)."""
    return {
        **download.as_dict(),
        "fits": {"cache_budget_bytes": download.cache_budget_bytes,
                 "pool": download.placement.pool.name if download.placement else None},
    }


# --- step 2: measure ------------------------------------------------------------------------------


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


def context_window(model_path: Path, requested: int | None = None) -> int:
    """The context window to open an engine with: what was asked for, else the default capped by
    what the model was built for."""
    if requested:
        return requested
    return min(DEFAULT_CONTEXT_WINDOW, model_context(model_path) or DEFAULT_CONTEXT_WINDOW)


def model_context(model_path: Path) -> int | None:
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") or config.get("n_positions")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def backend_options(
    kind: str, model_path: Path, *, sha: str | None, repo_id: str | None, engine: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The one place a backend's options are chosen (CLI `evaluate`, `verify` and the workers).
    `engine` holds the operator's vLLM settings (tensor parallelism, memory); `overrides` the
    command line's explicit choices (dtype, window, batch size)."""
    options: dict[str, Any] = {"model_sha": sha, "repo_id": repo_id}
    window = overrides.pop("max_model_len", None)
    if kind == "vllm":
        options["max_model_len"] = context_window(model_path, window)
        engine = dict(engine or {})
        for name in ("gpu_memory_utilization", "kv_cache_space_gb"):
            if name in engine:
                options[name] = engine.pop(name)
        if engine:
            options["engine_kwargs"] = engine
    elif window:
        options["max_model_len"] = window
    options.update({k: v for k, v in overrides.items() if v is not None})
    return options


def open_backend(kind: str, model_path: Path, *, sha: str | None, repo_id: str | None, **options: Any) -> Any:
    from verification.backends import make_backend

    return make_backend(kind, str(model_path), **backend_options(kind, model_path, sha=sha, repo_id=repo_id, **options))


def describe_backend(backend: Any) -> dict[str, Any]:
    try:
        return dict(backend.describe())
    except Exception as exc:  # describing must never fail a run
        return {"backend": getattr(backend, "name", "?"), "describe_error": str(exc)}


@dataclass
class MeasureOutcome:
    measurements: dict[str, Measurement]
    run_info: dict[str, Any] = field(default_factory=dict)
    backend: Any = None  # the open engine, when the caller keeps it (see `measure`'s stack)
    model_path: Path | None = None


def measure(
    model: intake_mod.IntakeResult,
    plan: Sequence[PlannedBenchmark],
    *,
    backend: str,
    datasets_dir: Path,
    limit: int | None,
    cache: ModelCache | None,
    hooks: MeasureHooks | None = None,
    engine: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    warm_backends: Mapping[str, Any] | None = None,
    stack: ExitStack | None = None,
) -> MeasureOutcome:
    """Fetch the pinned model, open an engine (or take the caller's warm one for this sha) and
    measure the plan. With `stack` the files and engine stay open until the caller closes it (the
    CLI's checks reuse them); without, both are released before returning."""
    hooks = hooks or MeasureHooks()
    with ExitStack() as own:
        keep = stack if stack is not None else own
        hooks.step("fetch model")
        path = keep.enter_context(model_files(model, cache))
        hooks.step(f"start {backend} backend")
        engine_ = (warm_backends or {}).get(model.sha or "")
        if engine_ is None:
            engine_ = open_backend(backend, path, sha=model.sha, repo_id=model.repo_id, engine=engine)
            keep.callback(engine_.close)
        outcome = measure_model(
            plan, backend=engine_, datasets_dir=datasets_dir, limit=limit, hooks=hooks, chunk_size=chunk_size
        )
        outcome.run_info["backend_info"] = describe_backend(engine_)
        outcome.model_path = path
        outcome.backend = engine_ if stack is not None else None
    return outcome


def measure_model(
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
    hooks = hooks or MeasureHooks()
    specs = {p.slug: spec_for_slug(p.slug, p.seed) for p in plan}
    sizes = {p.slug: len(specs[p.slug].load(datasets_dir, limit=limit).items) for p in plan}
    total = sum(sizes.values())
    offset = 0
    outcome = MeasureOutcome({}, {"timings_s": {}, "dataset_hashes": {}, "sampling_params": {}, "items": total})
    for p in plan:
        try:
            result = _run_planned(p, specs[p.slug], backend, datasets_dir, limit, hooks, chunk_size, offset, total)
        except NoSandbox as refused:  # generated code never runs outside a sandbox: not run, said why
            outcome.run_info.setdefault("not_run", {})[p.slug] = str(refused)
            hooks.step(f"{p.slug}: {refused}")
            continue
        finally:
            offset += sizes[p.slug]
        outcome.run_info["timings_s"][p.slug] = result.timings
        outcome.run_info["dataset_hashes"][p.slug] = result.dataset_hash
        outcome.run_info["sampling_params"][p.slug] = result.sampling or {"kind": specs[p.slug].request_kind}
        outcome.measurements[p.slug] = _measurement(p, result)
    hooks.progress(total, total, "", "measured")
    return outcome


def _run_planned(
    p: PlannedBenchmark, spec: Any, backend: Any, datasets_dir: Path, limit: int | None,
    hooks: MeasureHooks, chunk_size: int | None, offset: int, total: int,
) -> Any:
    from verification import runner

    done = {record.index: record for record in hooks.done_records(p)}
    hooks.step(f"measuring {p.slug}" + (f" (resuming after {len(done)} stored items)" if done else ""))

    def progress(finished: int, _total: int) -> None:
        hooks.progress(offset + finished, total, p.slug, f"measuring {p.slug}")

    try:
        return runner.run_benchmark(
            spec,
            backend,
            setup=Setup.from_dict(p.setup),
            limit=limit,
            datasets_dir=datasets_dir,
            done=done,
            on_records=lambda records: hooks.save_records(p, records),
            chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
            progress=progress,
        )
    except Exception as exc:
        reraise_interrupt(exc)
        if not p.private:
            raise
        # The original message may quote an item: only its type leaves this frame, and the
        # chained traceback is suppressed so logs cannot print it either.
        raise PrivateBenchmarkError(f"{p.slug}: {private_sets.safe_error(exc)}") from None


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


# --- step 3: conclude -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateSource:
    """A model to test lineage against besides the claimed base. `shape_signature` set (a
    maintainer's registered base) means: only when the submitted model's weight shapes match.
    `registered`: a row of the maintainers' KnownBase registry. A submission whose repo id and
    pinned sha are exactly such a row's (its revision, when one is registered) is that base itself,
    vouched for by the maintainers: the candidate comes back as the model (ModelRef.is_model), not
    as a base it might derive from. A name alone, or the same weights under another name, is not."""

    source: str
    revision: str | None = None
    shape_signature: str | None = None
    registered: bool = False


@dataclass
class Conclusion:
    """Everything `conclude` judges: plain data, whether it was measured a moment ago in this
    process (CLI) or loaded from the database (worker)."""

    model: intake_mod.IntakeResult
    base: intake_mod.IntakeResult | None
    claims: ClaimsDoc
    plan: list[PlannedBenchmark]
    measurements: dict[str, Measurement]
    base_measurements: dict[str, Measurement] | None
    backend: str
    limit: int | None
    datasets_dir: Path
    claimed_base: str | None = None
    candidates: list[CandidateSource] = field(default_factory=list)
    endpoint_url: str | None = None
    endpoint_model: str | None = None
    run_info: dict[str, Any] = field(default_factory=dict)
    check_options: dict[str, Any] = field(default_factory=dict)
    enabled_checks: Sequence[str] | None = None


def conclude(
    conclusion: Conclusion,
    *,
    cache: ModelCache | None,
    live_backend: Any = None,
    checks: Sequence[Check] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Compare claims with measurements, run the checks on the model's files (and the base's and
    the candidates'), and return the verity.report/1 document. `live_backend` is an engine already
    open on the model (the CLI's) for checks that generate; without one they open their own.
    Weights are fetched only for the checks that run and read them (`files_needed`): the host
    that concludes does not pull a 140 GB base for nothing."""
    c = conclusion
    benchmarks, flags = compare(c.measurements, c.claims, c.base_measurements)
    safety, safety_flags = assess_safety(
        c.measurements.get("xstest"), (c.base_measurements or {}).get("xstest"), c.datasets_dir, c.limit
    )
    with ExitStack() as stack:
        model_ref, base_ref, candidates = check_refs(c, files_needed(c, checks), cache, stack, token=token)
        context = CheckContext(
            model=model_ref,
            base=base_ref,
            candidates=candidates,
            claims=c.claims,
            intake=c.model.hygiene(),
            benchmarks=benchmarks,
            base_benchmarks=base_section(c.base_measurements),
            endpoint_url=c.endpoint_url or c.claims.endpoint,
            endpoint_model=c.endpoint_model or c.claims.endpoint_model,
            datasets_dir=c.datasets_dir,
            backend_name=c.backend,
            backend=live_backend,
            limit=c.limit,
            options={**check_options_for_plan(c.plan), **c.check_options},
        )
        sections, check_flags, check_log = run_checks(context, checks, enabled=c.enabled_checks)
    sections["safety"] = safety
    return build_report(
        source=c.model.source,
        revision=c.model.sha,
        claimed_base=c.claimed_base or c.claims.base_model,
        intake=c.model.hygiene(),
        benchmarks=benchmarks,
        base=base_section(c.base_measurements),
        sections=sections,
        flags=flags + safety_flags + check_flags,
        run={**c.run_info, "checks": check_log},
    )


@dataclass(frozen=True)
class FilesNeeded:
    """Whose local files the checks that run will read."""

    model: bool = False
    base: bool = False
    candidates: bool = False

    def __or__(self, other: FilesNeeded) -> FilesNeeded:
        return FilesNeeded(self.model or other.model, self.base or other.base, self.candidates or other.candidates)


ALL_FILES = FilesNeeded(model=True, base=True, candidates=True)
# What each registered check reads (its adapter in verification/<section>/check.py): provenance
# compares the model's tensors with the claimed base's and the candidates'; contamination probes
# the model and the base (its difference in differences); the endpoint check samples the model.
# A check of a section not listed here gets every file.
CHECK_FILES: dict[str, FilesNeeded] = {
    "provenance": ALL_FILES,
    "contamination": FilesNeeded(model=True, base=True),
    "endpoint": FilesNeeded(model=True),
}


def files_needed(c: Conclusion, checks: Sequence[Check] | None = None) -> FilesNeeded:
    """The files the checks about to run read: the registered checks the operator enabled
    (VERITY_CHECKS), or the caller's `checks`, each known by its section the way `run_checks`
    names it. The endpoint check reads nothing when no endpoint is named (it does not apply)."""
    if checks is not None:
        names = [getattr(check, "__qualname__", repr(check)) for check in checks]
    else:
        enabled = REPORT_SECTIONS if c.enabled_checks is None else tuple(c.enabled_checks)
        names = [path for path in CHECK_PATHS if _section_of(path) in enabled]
    needed = FilesNeeded()
    for name in names:
        section = _section_of(name)
        if section == "endpoint" and not (c.endpoint_url or c.claims.endpoint):
            continue
        needed = needed | CHECK_FILES.get(section or "", ALL_FILES)
    return needed


def _section_of(name: str) -> str | None:
    return next((section for section in REPORT_SECTIONS if section in name), None)


def check_refs(
    c: Conclusion, needed: FilesNeeded, cache: ModelCache | None, stack: ExitStack, *, token: str | None = None
) -> tuple[ModelRef, ModelRef | None, list[ModelRef]]:
    """The model, its claimed base and the lineage candidates as the checks see them: with local
    files (held open on `stack`) where `needed` says a check reads them, without (path None,
    nothing fetched, no candidate looked up) otherwise."""
    model_path = stack.enter_context(model_files(c.model, cache)) if needed.model else None
    model_ref = _ref(c.model, model_path)
    base_ref = None
    if c.base is not None:
        base_ref = _ref(c.base, stack.enter_context(model_files(c.base, cache)) if needed.base else None)
    if not needed.candidates:
        return model_ref, base_ref, []
    return model_ref, base_ref, candidate_refs(c.candidates, model_ref, base_ref, cache, stack, token=token)


def candidate_refs(
    candidates: Sequence[CandidateSource],
    model: ModelRef,
    base: ModelRef | None,
    cache: ModelCache | None,
    stack: ExitStack,
    *,
    token: str | None = None,
) -> list[ModelRef]:
    """Fetch the lineage candidates: explicit ones always, registered bases only when their shape
    signature matches the model's (only those can be compared tensor by tensor). The claimed base
    is compared already, and the model is never compared with itself: a registered base that IS
    the model comes back marked `is_model` (see CandidateSource); a candidate that cannot be had is
    passed without files (reported as unresolved)."""
    signature = _shape_signature(model.path) if any(c.shape_signature for c in candidates) else None
    claimed = {base.repo_id, base.source} - {None} if base else set()
    refs: list[ModelRef] = []
    for candidate in candidates:
        if _is_the_model(candidate, model, candidate.revision):
            refs.append(ModelRef(candidate.source, model.repo_id, model.sha, model.path, is_model=True))
            continue
        if candidate.shape_signature and (signature is None or candidate.shape_signature != signature):
            continue
        if candidate.shape_signature and candidate.source in claimed:
            continue
        try:
            result = intake_mod.inspect_source(candidate.source, candidate.revision, None, token=token)
            if result.sha == model.sha and result.repo_id in {model.repo_id, model.source} - {None}:
                # The model's own files are never compared with themselves. A registered revision
                # given as a branch or tag that resolves to the model's sha is the base itself.
                if _is_the_model(candidate, model, result.sha, result.repo_id):
                    refs.append(ModelRef(candidate.source, model.repo_id, model.sha, model.path, is_model=True))
                continue
            refs.append(_ref(result, stack.enter_context(model_files(result, cache))))
        except (intake_mod.IntakeRefused, intake_mod.TransientHubError, OSError, ValueError) as exc:
            log.warning("candidate %s unavailable: %s", candidate.source, exc)
            refs.append(ModelRef(candidate.source, candidate.source if candidate.shape_signature else None,
                                 candidate.revision, None))
    return refs


def _is_the_model(
    candidate: CandidateSource, model: ModelRef, revision: str | None, repo_id: str | None = None
) -> bool:
    """Whether a registered base is the submitted model itself: same repo id (or local path) and,
    when the registry pins a revision, the same sha. A registered base named like the model at
    another revision is fetched and compared like any other base; so are its weights under any
    other name (that is a lineage the submitter did not declare)."""
    if not candidate.registered:
        return False
    names = {model.repo_id, model.source} - {None}
    same_repo = candidate.source in names and (repo_id is None or repo_id in names)
    return same_repo and (candidate.revision is None or (model.sha is not None and revision == model.sha))


def _shape_signature(path: Path | None) -> str | None:
    from verification.provenance import ProvenanceInputError, shape_signature

    try:
        return shape_signature(path) if path else None
    except (ProvenanceInputError, OSError, ValueError) as exc:
        log.warning("no provenance candidates: shape signature failed: %s", exc)
        return None


def _ref(result: intake_mod.IntakeResult, path: Path | None) -> ModelRef:
    return ModelRef(result.source, result.repo_id, result.sha, path)


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
    core: Sequence[str] = DEFAULT_CORE_BENCHMARKS
    # Stored private held-out sets to measure as well (None: none).
    private_dir: Path | None = None
    engine: dict[str, Any] = field(default_factory=dict)
    chunk_size: int | None = None
    token: str | None = None
    enabled_checks: Sequence[str] | None = None
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
    """prepare -> measure (model, then claimed base) -> conclude, in this process; returns the
    verity.report/1 document. `warm_backends` maps a snapshot sha to an engine the caller already
    holds open on exactly that snapshot; it is used instead of starting a new one and left open.
    Raises intake.IntakeRefused when the submitted model is refused (nothing measured)."""
    started = time.monotonic()
    r = request
    hooks = hooks or MeasureHooks()
    hooks.step("intake")
    prep = prepare(
        r.source, r.revision, r.claims, base=r.base, benchmarks=r.benchmarks, core=r.core,
        private=register_private_sets(r.private_dir), max_model_bytes=r.max_model_bytes, token=r.token,
    )
    intake_s = round(time.monotonic() - started, 3)
    datasets_dir = datasets_dir_or_default(r.datasets_dir)
    common = dict(backend=r.backend, datasets_dir=datasets_dir, limit=r.limit, cache=cache, engine=r.engine,
                  chunk_size=r.chunk_size, warm_backends=warm_backends)
    with ExitStack() as stack:
        own = measure(prep.model, prep.plan, hooks=hooks, stack=stack, **common)
        base = None
        if prep.base is not None:
            hooks.step("measure claimed base")
            base = measure(prep.base, prep.plan, **common)  # the base engine is released before the checks
        hooks.step("checks")
        run_info = run_record(r.backend, prep, r.limit, own, base)
        report = conclude(
            Conclusion(
                model=prep.model, base=prep.base, claims=r.claims, plan=prep.plan,
                measurements=own.measurements, base_measurements=base.measurements if base else None,
                backend=r.backend, limit=r.limit, datasets_dir=datasets_dir, claimed_base=r.base,
                candidates=[CandidateSource(c) for c in r.candidates],
                endpoint_url=r.endpoint, endpoint_model=r.endpoint_model, run_info=run_info,
                check_options=r.check_options, enabled_checks=r.enabled_checks,
            ),
            cache=cache, live_backend=own.backend, checks=checks, token=r.token,
        )
    report["run"]["timings"] = {"intake_s": intake_s, "total_s": round(time.monotonic() - started, 3)}
    return report


def run_record(
    backend: str, prep: Preparation, limit: int | None, own: MeasureOutcome, base: MeasureOutcome | None,
    **extra: Any,
) -> dict[str, Any]:
    """The report's `run` section: how the measurement was made, the same for CLI and workers."""
    record: dict[str, Any] = {
        "code_version": code_version(),
        "backend": backend,
        "plan": [p.as_dict() for p in prep.plan],
        "limit": limit,
        "python": platform.python_version(),
        **own.run_info,
        **extra,
    }
    if base is not None:
        record["base_timings_s"] = base.run_info.get("timings_s", {})
    if prep.base_error:
        record["base_error"] = prep.base_error
    return record


@functools.lru_cache(maxsize=1)
def code_info() -> dict[str, Any]:
    """The git commit of this checkout (and whether it had local changes) and the package version."""
    import subprocess
    from importlib import metadata

    from verification.config import REPO_ROOT

    def git(*argv: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO_ROOT), *argv], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    try:
        package = metadata.version("verity")
    except metadata.PackageNotFoundError:
        package = None
    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"git_sha": sha, "git_dirty": bool(status) if sha else None, "package_version": package}


def code_version() -> str:
    """One short label of `code_info` for run rows and reports."""
    info = code_info()
    if info["git_sha"]:
        return f"verity@{info['git_sha'][:12]}{'+dirty' if info['git_dirty'] else ''}"
    return f"verity=={info['package_version'] or 'unknown'}"
