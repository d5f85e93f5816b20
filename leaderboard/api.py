"""The JSON API (django-ninja; OpenAPI docs at /api/docs).

Reads are public and come from the same precomputed rows as the pages. Creating a submission
needs a personal API token (Authorization: Bearer <key>), made on /accounts/tokens/, and runs
through the same service as the web form.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, get_type_hints

from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from ninja import NinjaAPI, Query, Schema
from ninja import Path as PathParam
from ninja.errors import HttpError
from ninja.security import HttpBearer
from pydantic import ConfigDict, Field, create_model

from leaderboard import selectors
from leaderboard.api_triage import router as triage_router
from leaderboard.forms import LeaderboardQuery
from leaderboard.models import ApiToken, EvaluationRun, Flag, ModelSubmission
from leaderboard.services.leaderboard import (
    BOARD_CACHE_SECONDS,
    SAFETY_RATES,
    board_cache_key,
    latest_finished_run,
    leaderboard_benchmarks,
    unlisted_reason,
)
from leaderboard.safety_profile import safety_profile, xstest_metrics
from leaderboard.services import eval_results, quotas
from leaderboard.services.public_text import scrub_internal
from leaderboard.services.submissions import SubmissionError, do_create_submission
from leaderboard.services.triage import PublicFlag, public_flag

api = NinjaAPI(title="Verity API", version="1", urls_namespace="api", docs_url="/docs")
api.add_router("/triage", triage_router)  # maintainers' triage endpoints (session + CSRF)

LAST_USED_RESOLUTION = timedelta(minutes=1)  # don't write on every request
MAX_ID = 2**63 - 1  # the database's bigint: a larger id is a 422, not a database error


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        api_token = selectors.api_token_for_key(token)
        if api_token is None or not api_token.user.is_active:
            return None
        now = timezone.now()
        if api_token.last_used is None or now - api_token.last_used > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=api_token.pk).update(last_used=now)
        return api_token.user


# --- schemas -------------------------------------------------------------------------------------


# A leaderboard row exactly as the page and the CSV have it (selectors.BoardEntry: the safety
# check's status and its two refusal rates included, the model page's address); `cells` is the
# page's column layout of `scores`, not data of its own.
EntryOut = create_model(
    "EntryOut",
    __base__=Schema,
    **{name: (hint, ...) for name, hint in get_type_hints(selectors.BoardEntry).items() if name != "cells"},
)


class LeaderboardOut(Schema):
    count: int
    page: int
    page_size: int
    benchmarks: list[str]
    results: list[EntryOut]


class ErrorOut(Schema):
    detail: str
    field: str = ""


class SubmissionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    repo_id: str = Field(description="Hugging Face repo id, 'org/name'")
    revision: str = Field("main", description="branch, tag or commit sha")
    kind: str | None = Field(
        None, description="'author' (default: you control the repo, proven by your Hugging Face sign-in or the owner "
                          "token committed as .verity/owner-token) or 'community' (any public model, shown apart)")
    base_model: str | None = None
    training: str | None = None
    endpoint: str | None = Field(None, description="OpenAI-compatible /v1 URL, without credentials")
    endpoint_model: str | None = None
    endpoint_api_key: str | None = Field(None, description="the endpoint's API key; kept secret, never shown")
    claims: list[dict[str, Any]] = Field(description="[{benchmark, score, shots?, cot?, chat_template?, source_url?}]")


class ProgressOut(Schema):
    benchmark: str
    done: int
    total: int | None
    finished: bool


class RunOut(Schema):
    id: int
    role: str
    status: str
    model_sha: str
    backend: str
    progress_done: int
    progress_total: int
    current_benchmark: str
    current_step: str
    error: str
    benchmarks: list[ProgressOut]
    usage: dict[str, Any] | None = None  # device time and cost, once the run is done


class SubmissionOut(Schema):
    id: int
    repo_id: str
    kind: str
    requested_revision: str
    pinned_sha: str
    status: str
    rejection_reason: str
    created_at: datetime
    finished_at: datetime | None
    claims: list[dict[str, Any]]
    run: RunOut | None
    url: str


class FlagOut(Schema):
    id: int
    submission_id: int
    repo_id: str
    kind: str
    severity: str
    benchmark: str
    summary: str
    evidence: dict[str, Any]
    status: str
    public_state: str
    decision_reason: str
    created_at: datetime


class MeasurementOut(Schema):
    """What one measurement of a benchmark says, standing or superseded."""

    benchmark_version: str
    measured: float
    ci_low: float
    ci_high: float
    n: int
    n_errors: int
    n_unparsed: int
    z: float | None
    verdict: str


class SupersededOut(MeasurementOut):
    """A result a re-scoring replaced (kept for the record; it no longer stands)."""

    superseded_by: str  # the version of the re-scored result that replaced it


class ResultOut(MeasurementOut):
    benchmark: str
    setup: dict[str, Any]
    private: bool
    claimed: float | None
    superseded: list[SupersededOut]  # earlier results of this benchmark and setup, newest first


class ModelOut(Schema):
    repo_id: str
    submission: SubmissionOut
    entry: EntryOut | None  # None when the model is not on the public board
    unlisted_reason: str  # why a model with measurements is kept off the public board, else ""
    results: list[ResultOut]
    flags: list[FlagOut]
    # The safety profile: status, both rates with intervals, per prompt type, the base comparison,
    # the regression evidence, the refusal classifier's measured agreement (as the model page).
    safety: dict[str, Any]


# --- leaderboard -----------------------------------------------------------------------------------


def _validated_board_params(request: HttpRequest) -> dict[str, Any]:
    query = LeaderboardQuery(request.GET)
    if not query.is_valid():
        message = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in query.errors.items())
        raise HttpError(400, message)
    return query.cleaned_data


@api.get("/leaderboard", response={200: LeaderboardOut, 400: ErrorOut}, tags=["leaderboard"])
def leaderboard(request: HttpRequest):
    """Ranked by measured average over the standard benchmark set (`benchmarks`); same filters as
    the page (q, size, family, license, hide_flagged, min_refusal_unsafe, max_refusal_safe, sort,
    page). Only valid results count: an invalid one has no score and is listed in `invalid`.
    Complete rows (`complete`: every standard benchmark measured validly) come first, ranked
    among themselves; partial rows follow as a group of their own (`rank` restarts at 1), their
    `average` covering only their `n_benchmarks` valid standard results."""
    params = _validated_board_params(request)
    key = board_cache_key("api", request.GET.urlencode())
    body = cache.get(key)
    if body is None:
        page = params.get("page") or 1
        count, entries = selectors.board_slice(params)
        if page > 1 and not entries:
            raise HttpError(404, f"page {page} is past the end ({count} models)")
        body = LeaderboardOut.model_validate({
            "count": count, "page": page, "page_size": selectors.PAGE_SIZE,
            "benchmarks": list(leaderboard_benchmarks()), "results": entries,
        }).model_dump_json()
        # Same short cache as the page (BOARD_CACHE_SECONDS): the board changes when a run is
        # published, not per request.
        cache.set(key, body, BOARD_CACHE_SECONDS)
    return HttpResponse(body, content_type="application/json")


@api.get("/leaderboard.csv", tags=["leaderboard"], response={200: None, 400: ErrorOut})
def leaderboard_csv(request: HttpRequest):
    """The whole filtered leaderboard as CSV (one column per standard benchmark, "invalid" where
    the result was not a measurement): complete rows first, then the partial ones, each group
    ranked on its own (`complete`, `n_benchmarks` say which and what the average covers)."""
    params = _validated_board_params(request)
    benchmarks = leaderboard_benchmarks()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "complete", "n_benchmarks", "repo_id", "sha", "average", *benchmarks,
                     "max_claimed_minus_measured", "badge", "size_class", "base_family", "license", "safety_status",
                     *(f"{name}{part}" for name in SAFETY_RATES for part in ("", "_ci_low", "_ci_high"))])
    for entry in selectors.all_board_entries(params):
        writer.writerow([
            entry.rank, "yes" if entry.complete else "no", entry.n_benchmarks, entry.repo_id, entry.pinned_sha,
            _num(entry.average), *("invalid" if cell.invalid else _num(cell.value) for cell in entry.cells),
            _num(entry.max_delta), entry.badge, entry.size_class, entry.base_family, entry.license,
            entry.safety_status, *_safety_cells(entry.safety),
        ])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="verity-leaderboard.csv"'
    return response


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _safety_cells(safety: dict[str, Any]) -> list[str]:
    """Each refusal rate with its interval (empty cells when the safety check gave no result)."""
    return [_num((safety.get(name) or {}).get(key)) for name in SAFETY_RATES for key in ("rate", "ci_low", "ci_high")]


# --- submissions ------------------------------------------------------------------------------------


@api.post("/submissions", auth=TokenAuth(), response={201: SubmissionOut, 400: ErrorOut}, tags=["submissions"])
def create_submission(request: HttpRequest, payload: SubmissionIn):
    """Submit a model with its claims (same document as the `verify` command's claims file, plus
    repo_id and revision). Needs `Authorization: Bearer <token>`."""
    data = payload.model_dump(exclude_none=True)
    try:
        submission = do_create_submission(request.auth, data, quotas.client_ip(request))
    except SubmissionError as exc:
        return 400, {"detail": exc.message, "field": exc.field}
    return 201, _submission_out(submission)


@api.get("/submissions/{submission_id}", response={200: SubmissionOut, 404: ErrorOut}, tags=["submissions"])
def submission_status(request: HttpRequest, submission_id: int = PathParam(..., ge=1, le=MAX_ID)):
    submission = get_object_or_404(ModelSubmission, pk=submission_id)
    return _submission_out(submission)


def _submission_out(submission: ModelSubmission) -> dict[str, Any]:
    run = selectors.latest_submission_run(submission)
    return {
        "id": submission.pk,
        "repo_id": submission.repo_id,
        "kind": submission.kind,
        "requested_revision": submission.requested_revision,
        "pinned_sha": submission.pinned_sha,
        "status": submission.status,
        "rejection_reason": scrub_internal(submission.rejection_reason),
        "created_at": submission.created_at,
        "finished_at": submission.finished_at,
        "claims": selectors.claim_documents(submission),
        "run": _run_out(run) if run else None,
        "url": reverse("submission_status", args=[submission.pk]),
    }


def _run_out(run: EvaluationRun) -> dict[str, Any]:
    return {
        "id": run.pk, "role": run.role, "status": run.status, "model_sha": run.model_sha, "backend": run.backend,
        "progress_done": run.progress_done, "progress_total": run.progress_total,
        "current_benchmark": run.current_benchmark, "current_step": scrub_internal(run.current_step),
        "error": scrub_internal(run.error),
        "benchmarks": selectors.benchmark_progress(run),
        "usage": (run.timings or {}).get("usage"),
    }


# --- flags ---------------------------------------------------------------------------------------------

class FlagQuery(Schema):
    repo_id: str | None = Field(None, max_length=193, pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")
    status: Flag.Status | None = None
    kind: Flag.Kind | None = None
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0)


def _flag_out(public: PublicFlag) -> dict[str, Any]:
    flag = public.flag
    return {
        "id": flag.pk, "submission_id": flag.submission_id, "repo_id": flag.submission.repo_id, "kind": flag.kind,
        "severity": flag.severity, "benchmark": flag.benchmark, "summary": flag.summary, "evidence": flag.evidence,
        "status": flag.status, "public_state": public.label, "decision_reason": public.reason,
        "created_at": flag.created_at,
    }


def _public(flags: Iterable[Flag]) -> list[dict[str, Any]]:
    return [_flag_out(item) for item in _shown(flags)]


def _shown(flags: Iterable[Flag]) -> list[PublicFlag]:
    shown = (public_flag(flag) for flag in flags)
    return [item for item in shown if item is not None]


@api.get("/flags", response=list[FlagOut], tags=["flags"])
def flags(request: HttpRequest, filters: Query[FlagQuery]):
    """Public view of flags: evidence and state (open flags are "under review")."""
    found = selectors.public_flag_rows(filters.repo_id, filters.status, filters.kind)
    return _public(found[filters.offset:filters.offset + filters.limit])


# --- models --------------------------------------------------------------------------------------------


def _published_submission(org: str, name: str) -> ModelSubmission:
    try:
        return selectors.model_submission(f"{org}/{name}")
    except Http404:
        raise HttpError(404, f"no submission of {org}/{name}") from None


@api.get("/models/{org}/{name}", response=ModelOut, tags=["models"])
def model_detail(request: HttpRequest, org: str, name: str):
    submission = _published_submission(org, name)
    results = selectors.result_rows(latest_finished_run(submission))
    flags = _shown(selectors.flags_of(submission))
    entry = selectors.published_entry(submission)
    return {
        "repo_id": submission.repo_id,
        "submission": _submission_out(submission),
        "entry": entry,
        "unlisted_reason": unlisted_reason(selectors.entry_of(submission)),
        "results": results,
        "flags": [_flag_out(item) for item in flags],
        "safety": safety_profile(submission.report, xstest_metrics(results), flags),
    }


@api.get("/models/{org}/{name}/eval_results.yaml", tags=["models"], response={200: None, 404: ErrorOut})
def model_eval_results(request: HttpRequest, org: str, name: str):
    """The measured values in the Hub's Eval Results format (a `.eval_results/*.yaml` file: one
    entry per valid public measurement with a Hub benchmark dataset, and one per refusal rate of
    the safety check; `source` is this model page, the interval in `notes`)."""
    submission = _published_submission(org, name)
    run = latest_finished_run(submission)
    if run is None:
        raise HttpError(404, f"{org}/{name} has no finished measurement yet")
    source_url = request.build_absolute_uri(f"/models/{org}/{name}/?submission={submission.pk}")
    body = eval_results.eval_results_yaml(eval_results.eval_result_entries(submission, run, source_url))
    response = HttpResponse(body, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="verity-{name}.yaml"'
    return response
