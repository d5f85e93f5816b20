"""Precomputed leaderboard rows.

The leaderboard page and API read `LeaderboardEntry` rows only; this module rebuilds one row from a
submission's latest finished run, its claims and its flags. It is called by the pipeline when it
publishes a run and by triage when a flag is decided, never per request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, OuterRef, Q, QuerySet, Subquery

from leaderboard.models import (
    BenchmarkResult,
    EvaluationRun,
    Flag,
    KnownBase,
    LeaderboardEntry,
    ModelSubmission,
    SafetyStatus,
)
from verification.compare import is_valid_entry
from verification.report import status_for
from verification.vocabulary import FLAGGING_SEVERITIES, INVALID

# Parameter-count classes (upper bounds, exclusive) used by the size filter.
SIZE_CLASSES: tuple[tuple[str, int | None], ...] = (
    ("<1B", 1_000_000_000),
    ("1-3B", 3_500_000_000),
    ("3-9B", 9_500_000_000),
    ("9-20B", 20_000_000_000),
    ("20-40B", 40_000_000_000),
    ("40B+", None),
)

# An open flag is "under review": the public already sees the model as flagged, with that state.
BADGE_FLAG_STATES = (Flag.Status.OPEN, Flag.Status.CONFIRMED)
PUBLISHED_STATUSES = (
    ModelSubmission.Status.VERIFIED,
    ModelSubmission.Status.FLAGGED,
    ModelSubmission.Status.INCOMPLETE,
)


# Rendered leaderboard fragments and API pages are cached this long (per process) and keyed by
# a generation that every rebuild in this process bumps; a rebuild in another process (a worker
# publishing) shows within this many seconds.
BOARD_CACHE_SECONDS = 10
_GENERATION_KEY = "leaderboard:generation"


def board_cache_key(kind: str, query_string: str) -> str:
    generation = cache.get_or_set(_GENERATION_KEY, 0, None)
    return f"leaderboard:{kind}:{generation}:{hashlib.sha1(query_string.encode()).hexdigest()}"


def bump_board_generation() -> None:
    try:
        cache.incr(_GENERATION_KEY)
    except ValueError:  # not set yet (or evicted)
        cache.set(_GENERATION_KEY, 1, None)


def leaderboard_benchmarks() -> tuple[str, ...]:
    """The standard set the board averages over, in column order (settings.LEADERBOARD_BENCHMARKS;
    benchmarks outside it still show on the model page)."""
    return tuple(settings.LEADERBOARD_BENCHMARKS)


def size_class_for(n_params: int | None) -> str:
    if not n_params:
        return ""
    for label, upper in SIZE_CLASSES:
        if upper is None or n_params < upper:
            return label
    return ""


def base_family_for(claimed_base: str) -> str:
    """The maintainers' family for a registered base, else the first word of the base's name
    ("meta-llama/Llama-3.1-8B" -> "llama") so that unregistered bases still group sensibly."""
    if not claimed_base:
        return ""
    known = KnownBase.objects.filter(repo_id=claimed_base).values_list("family", flat=True).first()
    if known:
        return known
    name = claimed_base.split("/")[-1]
    match = re.match(r"[A-Za-z]+", name)
    return match.group(0).lower() if match else name.lower()


def finished_runs(submission: ModelSubmission) -> QuerySet:
    """The submission's finished runs of the model itself, newest first."""
    return (submission.runs.filter(role=EvaluationRun.Role.SUBMISSION, status=EvaluationRun.Status.DONE)
            .order_by("-finished_at", "-id"))


def latest_finished_run(submission: ModelSubmission) -> EvaluationRun | None:
    return finished_runs(submission).first()


def latest_headline_results(submission_ids: Iterable[int]) -> dict[int, dict[str, BenchmarkResult]]:
    """headline_results of each submission's latest finished run, for several submissions in one
    query (each one's latest run picked by a correlated subquery); {} for one with none."""
    latest = (EvaluationRun.objects.filter(submission_id=OuterRef("run__submission_id"),
                                           role=EvaluationRun.Role.SUBMISSION, status=EvaluationRun.Status.DONE)
              .order_by("-finished_at", "-id").values("id")[:1])
    ids = list(submission_ids)
    results = (BenchmarkResult.objects.filter(run__submission_id__in=ids, run_id=Subquery(latest))
               .annotate(submission_id=F("run__submission_id")))
    by_submission: dict[int, list[BenchmarkResult]] = {pk: [] for pk in ids}
    for result in results:
        by_submission[result.submission_id].append(result)
    return {pk: headline_of(found) for pk, found in by_submission.items()}


def split_superseded(results: Iterable[BenchmarkResult]) -> tuple[list[BenchmarkResult], dict[int, BenchmarkResult]]:
    """A run's results split into those that stand, in id order, and the ones a re-scoring
    superseded: {superseded result's id: the result that replaced it}. A re-scored result (same
    run, benchmark and setup, written later) supersedes the one it re-scored; the older one is
    kept for the record but no longer stands."""
    latest: dict[tuple[str, str], BenchmarkResult] = {}
    superseded: dict[int, BenchmarkResult] = {}
    for result in sorted(results, key=lambda item: item.id):
        key = (result.benchmark, result.setup_key)
        if key in latest:
            superseded[latest[key].id] = result
        latest[key] = result
    return sorted(latest.values(), key=lambda item: item.id), superseded


def headline_results(run: EvaluationRun) -> dict[str, BenchmarkResult]:
    return headline_of(run.results.all())


def headline_of(results: Iterable[BenchmarkResult]) -> dict[str, BenchmarkResult]:
    """One standing result per benchmark (split_superseded) of one run's results: the one measured
    under the claimed setup (it carries the verdict) when there is one, else the first measured."""
    chosen: dict[str, BenchmarkResult] = {}
    standing, _ = split_superseded(results)
    for result in standing:
        current = chosen.get(result.benchmark)
        if current is None or (current.claimed is None and result.claimed is not None):
            chosen[result.benchmark] = result
    return chosen


def badge_for(submission: ModelSubmission, flags: Iterable[dict[str, Any]] | None = None) -> str:
    """The row's badge: "flagged" while a warning or critical flag stands ("info" flags are shown
    but never mark a model), "incomplete" when a check that applies could not run, "verified" once
    published with every check, else "pending". `flags`: the submission's flags as dicts with
    "severity" and "status", when the caller has already read them (else they are queried)."""
    if flags is None:
        flagged = submission.flags.filter(severity__in=FLAGGING_SEVERITIES, status__in=BADGE_FLAG_STATES).exists()
    else:
        flagged = any(f["severity"] in FLAGGING_SEVERITIES and f["status"] in BADGE_FLAG_STATES for f in flags)
    if flagged:
        return "flagged"
    if submission.status == ModelSubmission.Status.INCOMPLETE:
        return "incomplete"
    if submission.status in PUBLISHED_STATUSES:
        return "verified"
    return "pending"


def status_now(submission: ModelSubmission) -> str:
    """A published submission's status from what stands now, by the report's own rule
    (verification.report.status_for): flagged while a warning or critical flag stands, else
    incomplete when its report names a check that applies but did not run (a flagged one with no
    report ran no check), else verified. A flag decided since (dismissed or resolved by triage,
    resolved by a re-scoring) no longer counts; one raised since (the weights re-check, a
    re-comparison, a re-scoring) does. A verified or incomplete status is the checks' verdict,
    which no flag decision changes; any other status (queued, running, rejected, failed) is the
    pipeline's. Both are returned as they are."""
    if submission.status not in PUBLISHED_STATUSES:
        return submission.status
    standing = submission.flags.filter(status__in=BADGE_FLAG_STATES, severity__in=FLAGGING_SEVERITIES)
    if standing.exists():
        return ModelSubmission.Status.FLAGGED
    if submission.status != ModelSubmission.Status.FLAGGED:
        return submission.status
    return status_for({**(submission.report or {}), "flags": []})


def do_sync_status(submission: ModelSubmission) -> None:
    """Store status_now on a (locked) submission whose flags changed, so that its status, badge,
    board row and API agree."""
    status = status_now(submission)
    if status != submission.status:
        submission.status = status
        submission.save(update_fields=["status", "updated_at"])


def is_valid_result(result: BenchmarkResult) -> bool:
    """Whether a stored result is a measurement of the model (verification.compare's rule: not
    marked invalid, and the harness failed on at most MAX_ERROR_RATE of its items)."""
    return is_valid_entry({"verdict": result.verdict, "n": result.n, "n_errors": result.n_errors})


@dataclass(frozen=True)
class EntryValues:
    scores: dict[str, float]  # valid measurements only: an invalid result is no score
    claimed: dict[str, float]
    verdicts: dict[str, str]  # an invalid result's benchmark reads "invalid"
    average: float | None  # over the valid standard benchmarks the model has
    max_delta: float | None
    complete: bool  # `average` covers every standard benchmark, each from a valid result


def entry_values(claims: dict[str, float], results: dict[str, BenchmarkResult]) -> EntryValues:
    """The row's numbers from the claims ({slug: score}) and one result per benchmark.

    Only valid results count: an invalid one (harness errors above MAX_ERROR_RATE, or marked
    invalid) gives no score and its verdict reads "invalid". The average is over the standard
    set's valid scores; the row is complete only when that is every standard benchmark, and a
    partial row is ranked apart from the complete ones (its average covers fewer benchmarks, so
    the two are not comparable)."""
    valid = {slug: result for slug, result in results.items() if is_valid_result(result)}
    scores = {slug: round(result.measured, 4) for slug, result in valid.items()}
    verdicts = {slug: (result.verdict if slug in valid else INVALID) for slug, result in results.items()}
    claimed = {slug: claims.get(slug, result.claimed) for slug, result in results.items()}
    claimed = {slug: value for slug, value in claimed.items() if value is not None}
    standard_set = leaderboard_benchmarks()
    standard = [scores[slug] for slug in standard_set if slug in scores]
    average = round(sum(standard) / len(standard), 4) if standard else None
    complete = bool(standard_set) and len(standard) == len(standard_set)
    deltas = [claimed[slug] - scores[slug] for slug in claimed if slug in scores]
    max_delta = round(max(deltas), 4) if deltas else None
    return EntryValues(scores, claimed, verdicts, average, max_delta, complete)


# XSTest's two refusal rates, as the report's `safety` section and the entry name them.
SAFETY_RATES = ("refusal_unsafe", "refusal_safe")
RATE_KEYS = ("rate", "ci_low", "ci_high", "n")


@dataclass(frozen=True)
class SafetyValues:
    status: str
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)  # {name: {rate, ci_low, ci_high, n}}

    def rate(self, name: str) -> float | None:
        return self.rates[name]["rate"] if name in self.rates else None


def safety_values(report: dict[str, Any] | None) -> SafetyValues:
    """The row's safety columns from the report's `safety` section: its status and, when the
    check ran validly, both refusal rates with their intervals. No section: not run. A valid run
    that lacks one of the rates (a limit too small to reach the unsafe prompts) checked nothing
    about refusing unsafe requests, so it does not count as a valid result."""
    section = (report or {}).get("safety") or {}
    status = section.get("status") if section.get("status") in SafetyStatus.values else SafetyStatus.NOT_RUN
    if status != SafetyStatus.OK:
        return SafetyValues(status)
    rates = {name: {key: section[name].get(key) for key in RATE_KEYS} for name in SAFETY_RATES
             if isinstance(section.get(name), dict) and isinstance(section[name].get("rate"), (int, float))}
    if len(rates) < len(SAFETY_RATES):
        return SafetyValues(SafetyStatus.INVALID)
    return SafetyValues(SafetyStatus.OK, rates)


def listing_filter() -> Q:
    """Which rows the public board lists (page, API, exports, plots): every row, or with
    VERITY_REQUIRE_SAFETY only those with a valid safety result."""
    return Q(safety_status=SafetyStatus.OK) if settings.REQUIRE_SAFETY else Q()


def unlisted_reason(entry: LeaderboardEntry | None) -> str:
    """Why a model that has a row is kept off the public board ("" when it is listed)."""
    if entry is None or not settings.REQUIRE_SAFETY or entry.safety_status == SafetyStatus.OK:
        return ""
    why = {SafetyStatus.NOT_RUN: "was not measured", SafetyStatus.INVALID: "gave no valid result"}
    return (f"Not on the public leaderboard: the maintainers require the safety check (XSTest) before a "
            f"model is listed, and for this revision it {why.get(entry.safety_status, 'gave no valid result')}.")


def n_params_of(submission: ModelSubmission) -> int | None:
    for source in (submission.intake or {}, (submission.report or {}).get("intake") or {}):
        for key in ("n_params", "num_parameters", "parameters"):
            value = source.get(key)
            if isinstance(value, (int, float)) and value > 0:
                return int(value)
    return None


def license_of(submission: ModelSubmission) -> str:
    for source in (submission.intake or {}, (submission.report or {}).get("intake") or {}):
        value = source.get("license")
        if isinstance(value, str) and value:
            return value[:100]
    return ""


@transaction.atomic
def do_refresh_leaderboard_entry(submission: ModelSubmission) -> LeaderboardEntry | None:
    """Rebuild (or remove) the leaderboard row of one submission from its latest finished run.

    Returns the entry, or None when the submission has nothing measured to show (no finished
    run, or it was rejected) or is a community verification: those are shown apart on the model
    page and never make (or replace) the repository's row, whose claims are its owner's."""
    submission = ModelSubmission.objects.select_for_update().get(pk=submission.pk)
    transaction.on_commit(bump_board_generation)
    do_sync_status(submission)  # its flags may have changed: the badge below reads the status
    run = latest_finished_run(submission)
    results = headline_results(run) if run else {}
    if (not results or submission.status == ModelSubmission.Status.REJECTED
            or submission.kind != ModelSubmission.Kind.AUTHOR):
        LeaderboardEntry.objects.filter(submission=submission).delete()
        return None
    if _newer_entry_exists(submission):
        # The board shows one row per repository: its latest published revision.
        LeaderboardEntry.objects.filter(submission=submission).delete()
        return None
    values = entry_values({c.benchmark: c.score for c in submission.claims.all()}, results)
    safety = safety_values(submission.report)
    n_params = n_params_of(submission)
    entry, _ = LeaderboardEntry.objects.update_or_create(
        submission=submission,
        defaults={
            "repo_id": submission.repo_id,
            "pinned_sha": submission.pinned_sha or run.model_sha[:40],
            "average": values.average,
            "complete": values.complete,
            "scores": values.scores,
            "claimed": values.claimed,
            "verdicts": values.verdicts,
            "max_delta": values.max_delta,
            "badge": badge_for(submission),
            "n_params": n_params,
            "size_class": size_class_for(n_params),
            "base_family": base_family_for(submission.claimed_base),
            "license": license_of(submission),
            "safety_status": safety.status,
            "refusal_unsafe": safety.rate("refusal_unsafe"),
            "refusal_safe": safety.rate("refusal_safe"),
            "safety": safety.rates,
        },
    )
    LeaderboardEntry.objects.filter(repo_id=submission.repo_id).exclude(submission=submission).filter(
        submission__created_at__lt=submission.created_at, submission__kind=ModelSubmission.Kind.AUTHOR
    ).delete()
    return entry


def _newer_entry_exists(submission: ModelSubmission) -> bool:
    return LeaderboardEntry.objects.filter(
        repo_id=submission.repo_id, submission__created_at__gt=submission.created_at,
        submission__kind=ModelSubmission.Kind.AUTHOR,
    ).exists()
