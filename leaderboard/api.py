"""The JSON API (django-ninja; OpenAPI docs at /api/docs).

Reads are public and come from the same precomputed rows as the pages. Creating a submission
needs a personal API token (Authorization: Bearer <key>), made on /accounts/tokens/, and runs
through the same service as the web form.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime, timedelta
from typing import Any

import yaml
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from ninja import NinjaAPI, Query, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer
from pydantic import ConfigDict, Field

from leaderboard.models import ApiToken, EvaluationRun, Flag, LeaderboardEntry, ModelSubmission
from leaderboard.api_triage import router as triage_router
from leaderboard.services.leaderboard import BOARD_CACHE_SECONDS, board_cache_key, leaderboard_benchmarks
from leaderboard.services.triage import PublicFlag, public_flag
from leaderboard.services.submissions import SubmissionError, do_create_submission
from leaderboard.views import PAGE_SIZE, LeaderboardQuery, benchmark_progress, board_count, leaderboard_queryset

api = NinjaAPI(title="Verity API", version="1", urls_namespace="api", docs_url="/docs")
api.add_router("/triage", triage_router)  # maintainers' triage endpoints (session + CSRF)

LAST_USED_RESOLUTION = timedelta(minutes=1)  # don't write on every request


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        digest = hashlib.sha256(token.encode()).hexdigest()
        api_token = ApiToken.objects.select_related("user").filter(key_hash=digest).first()
        if api_token is None or not api_token.user.is_active:
            return None
        now = timezone.now()
        if api_token.last_used is None or now - api_token.last_used > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=api_token.pk).update(last_used=now)
        return api_token.user


# --- schemas -------------------------------------------------------------------------------------


class EntryOut(Schema):
    rank: int
    repo_id: str
    pinned_sha: str
    submission_id: int
    average: float | None
    scores: dict[str, float]
    claimed: dict[str, float]
    max_delta: float | None
    badge: str
    size_class: str
    base_family: str
    license: str
    url: str


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
    base_model: str | None = None
    training: str | None = None
    endpoint: str | None = None
    endpoint_model: str | None = None
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


class SubmissionOut(Schema):
    id: int
    repo_id: str
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


class ResultOut(Schema):
    benchmark: str
    benchmark_version: str
    setup: dict[str, Any]
    private: bool
    measured: float
    ci_low: float
    ci_high: float
    n: int
    n_errors: int
    n_unparsed: int
    claimed: float | None
    z: float | None
    verdict: str


class ModelOut(Schema):
    repo_id: str
    submission: SubmissionOut
    entry: EntryOut | None
    results: list[ResultOut]
    flags: list[FlagOut]


# --- leaderboard -----------------------------------------------------------------------------------


def _validated_board_params(request: HttpRequest) -> dict[str, Any]:
    query = LeaderboardQuery(request.GET)
    if not query.is_valid():
        message = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in query.errors.items())
        raise HttpError(400, message)
    return query.cleaned_data


_ENTRY_FIELDS = (
    "repo_id", "pinned_sha", "submission_id", "average", "scores", "claimed", "max_delta", "badge",
    "size_class", "base_family", "license",
)


def _entry_dict(values: dict[str, Any], rank: int) -> dict[str, Any]:
    org, name = values["repo_id"].split("/", 1)
    return {**values, "rank": rank, "url": f"/models/{org}/{name}/"}


@api.get("/leaderboard", response={200: LeaderboardOut, 400: ErrorOut}, tags=["leaderboard"])
def leaderboard(request: HttpRequest):
    """Ranked by measured average over the standard benchmark set; same filters as the page
    (q, size, family, license, hide_flagged, sort, page)."""
    params = _validated_board_params(request)
    key = board_cache_key("api", request.GET.urlencode())
    body = cache.get(key)
    if body is None:
        page = params.get("page") or 1
        entries = leaderboard_queryset(params)
        start = (page - 1) * PAGE_SIZE
        rows = list(entries.values(*_ENTRY_FIELDS)[start:start + PAGE_SIZE])
        count = board_count(params, entries) if len(rows) == PAGE_SIZE or page > 1 else len(rows)
        if page > 1 and not rows:
            raise HttpError(404, f"page {page} is past the end ({count} models)")
        body = LeaderboardOut.model_validate({
            "count": count, "page": page, "page_size": PAGE_SIZE, "benchmarks": list(leaderboard_benchmarks()),
            "results": [_entry_dict(values, start + i + 1) for i, values in enumerate(rows)],
        }).model_dump_json()
        # Same short cache as the page (BOARD_CACHE_SECONDS): the board changes when a run is
        # published, not per request.
        cache.set(key, body, BOARD_CACHE_SECONDS)
    return HttpResponse(body, content_type="application/json")


@api.get("/leaderboard.csv", tags=["leaderboard"], response={200: None, 400: ErrorOut})
def leaderboard_csv(request: HttpRequest):
    """The whole filtered leaderboard as CSV (one column per standard benchmark)."""
    params = _validated_board_params(request)
    benchmarks = leaderboard_benchmarks()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "repo_id", "sha", "average", *benchmarks, "max_claimed_minus_measured", "badge",
                     "size_class", "base_family", "license"])
    for rank, values in enumerate(leaderboard_queryset(params).values(*_ENTRY_FIELDS).iterator(), start=1):
        writer.writerow([
            rank, values["repo_id"], values["pinned_sha"], _num(values["average"]),
            *(_num(values["scores"].get(slug)) for slug in benchmarks), _num(values["max_delta"]),
            values["badge"], values["size_class"], values["base_family"], values["license"],
        ])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="verity-leaderboard.csv"'
    return response


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


# --- submissions ------------------------------------------------------------------------------------


@api.post("/submissions", auth=TokenAuth(), response={201: SubmissionOut, 400: ErrorOut}, tags=["submissions"])
def create_submission(request: HttpRequest, payload: SubmissionIn):
    """Submit a model with its claims (same document as the `verify` command's claims file, plus
    repo_id and revision). Needs `Authorization: Bearer <token>`."""
    data = payload.model_dump(exclude_none=True)
    try:
        submission = do_create_submission(request.auth, data)
    except SubmissionError as exc:
        return 400, {"detail": exc.message, "field": exc.field}
    return 201, _submission_out(submission)


@api.get("/submissions/{submission_id}", response=SubmissionOut, tags=["submissions"])
def submission_status(request: HttpRequest, submission_id: int):
    submission = get_object_or_404(ModelSubmission, pk=submission_id)
    return _submission_out(submission)


def _submission_out(submission: ModelSubmission) -> dict[str, Any]:
    run = submission.runs.filter(role=EvaluationRun.Role.SUBMISSION).order_by("-created_at", "-id").first()
    return {
        "id": submission.pk,
        "repo_id": submission.repo_id,
        "requested_revision": submission.requested_revision,
        "pinned_sha": submission.pinned_sha,
        "status": submission.status,
        "rejection_reason": submission.rejection_reason,
        "created_at": submission.created_at,
        "finished_at": submission.finished_at,
        "claims": [
            {"benchmark": c.benchmark, "score": c.score, **c.setup()} for c in submission.claims.order_by("benchmark")
        ],
        "run": _run_out(run) if run else None,
        "url": reverse("submission_status", args=[submission.pk]),
    }


def _run_out(run: EvaluationRun) -> dict[str, Any]:
    return {
        "id": run.pk, "role": run.role, "status": run.status, "model_sha": run.model_sha, "backend": run.backend,
        "progress_done": run.progress_done, "progress_total": run.progress_total,
        "current_benchmark": run.current_benchmark, "current_step": run.current_step, "error": run.error,
        "benchmarks": [
            {"benchmark": p.slug, "done": p.done, "total": p.total, "finished": p.finished}
            for p in benchmark_progress(run)
        ],
    }


# --- flags ---------------------------------------------------------------------------------------------

class FlagQuery(Schema):
    repo_id: str | None = None
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


def _public(flags: Any) -> list[dict[str, Any]]:
    shown = (public_flag(flag) for flag in flags)
    return [_flag_out(item) for item in shown if item is not None]


@api.get("/flags", response=list[FlagOut], tags=["flags"])
def flags(request: HttpRequest, filters: Query[FlagQuery]):
    """Public view of flags: evidence and state (open flags are "under review")."""
    found = Flag.objects.select_related("submission").order_by("-created_at", "-id")
    if filters.repo_id:
        found = found.filter(submission__repo_id=filters.repo_id)
    if filters.status:
        found = found.filter(status=filters.status)
    if filters.kind:
        found = found.filter(kind=filters.kind)
    return _public(found[filters.offset:filters.offset + filters.limit])


# --- models --------------------------------------------------------------------------------------------


def _published_submission(org: str, name: str) -> ModelSubmission:
    from leaderboard.views import _model_submission

    try:
        return _model_submission(f"{org}/{name}", None)
    except Http404:
        raise HttpError(404, f"no submission of {org}/{name}") from None


def _latest_done_run(submission: ModelSubmission) -> EvaluationRun | None:
    return (
        submission.runs.filter(role=EvaluationRun.Role.SUBMISSION, status=EvaluationRun.Status.DONE)
        .order_by("-finished_at", "-id").first()
    )


@api.get("/models/{org}/{name}", response=ModelOut, tags=["models"])
def model_detail(request: HttpRequest, org: str, name: str):
    submission = _published_submission(org, name)
    run = _latest_done_run(submission)
    entry = LeaderboardEntry.objects.filter(submission=submission).values(*_ENTRY_FIELDS).first()
    results = list(run.results.order_by("benchmark", "id")) if run else []
    return {
        "repo_id": submission.repo_id,
        "submission": _submission_out(submission),
        "entry": _entry_dict(entry, 0) if entry else None,
        "results": [
            {field: getattr(r, field) for field in ResultOut.model_fields} for r in results
        ],
        "flags": _public(submission.flags.select_related("submission").order_by("-created_at")),
    }


# Hub dataset ids for the `.eval_results` export (the reverse of the card import's mapping).
HUB_DATASETS: dict[str, tuple[str, str]] = {
    "gsm8k": ("openai/gsm8k", "main"),
    "mmlu": ("cais/mmlu", "all"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge"),
    "truthfulqa_mc1": ("truthfulqa/truthful_qa", "multiple_choice"),
    "truthfulqa_mc2": ("truthfulqa/truthful_qa", "multiple_choice"),
    "math500": ("HuggingFaceH4/MATH-500", "default"),
    "math": ("hendrycks/competition_math", "default"),
    "humaneval": ("openai/openai_humaneval", "openai_humaneval"),
    "ifeval": ("google/IFEval", "default"),
}


@api.get("/models/{org}/{name}/eval_results.yaml", tags=["models"], response={200: None, 404: ErrorOut})
def model_eval_results(request: HttpRequest, org: str, name: str):
    """Measured values in the Hub's `.eval_results/*.yaml` shape (huggingface_hub's
    EvalResultEntry), one entry per public benchmark measured, with the interval in `notes`."""
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    submission = _published_submission(org, name)
    run = _latest_done_run(submission)
    if run is None:
        raise HttpError(404, f"{org}/{name} has no finished measurement yet")
    entries = []
    for result in run.results.order_by("benchmark", "id"):
        dataset_id, task_id = HUB_DATASETS.get(result.benchmark, (f"verity/{result.benchmark}", "default"))
        setup = ", ".join(f"{k}={v}" for k, v in sorted((result.setup or {}).items()))
        entries.append(
            EvalResultEntry(
                dataset_id=dataset_id,
                task_id=task_id,
                value=round(result.measured, 2),
                date=(run.finished_at or run.created_at).isoformat(),
                source_url=request.build_absolute_uri(f"/models/{org}/{name}/?submission={submission.pk}"),
                source_name="Verity (re-measured)",
                notes=(
                    f"measured by Verity at {run.model_sha[:12]}; 95% CI [{result.ci_low:.1f}, {result.ci_high:.1f}], "
                    f"n={result.n}, benchmark version {result.benchmark_version}; {setup or 'default setup'}"
                ),
            )
        )
    body = yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True)
    response = HttpResponse(body, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="verity-{name}.yaml"'
    return response
