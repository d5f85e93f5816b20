"""Thin views: read rows, render templates. Validation lives in forms/services; aggregation lives
in the precomputed LeaderboardEntry rows (leaderboard.services.leaderboard)."""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import EmptyPage, Paginator
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template, render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from leaderboard import oauth, plots
from leaderboard.forms import ApiTokenForm, SignUpForm, SubmissionForm
from leaderboard.models import (
    MISSING_SORT_VALUE,
    ApiToken,
    BenchmarkResult,
    EvaluationRun,
    LeaderboardEntry,
    ModelSubmission,
    SampleResult,
    entry_sort_value,
)
from leaderboard.services import triage as triage_service
from leaderboard.services.leaderboard import (
    BOARD_CACHE_SECONDS,
    SIZE_CLASSES,
    board_cache_key,
    leaderboard_benchmarks,
)
from leaderboard.services.submissions import (
    PENDING_STATUSES,
    SubmissionError,
    card_claims,
    check_author,
    do_create_submission,
)

PAGE_SIZE = 50
SAMPLES_PAGE_SIZE = 20
FILTER_CHOICES_TTL = 60  # seconds: new families/licenses appear on the filter within a minute


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


# --- leaderboard ---------------------------------------------------------------------------------


def filter_choices() -> dict[str, list[str]]:
    """Distinct families and licenses for the filter menus, cached briefly: two DISTINCT scans
    per page view would dominate the page's cost on a large board."""
    cached = cache.get("leaderboard:filter-choices")
    if cached is None:
        entries = LeaderboardEntry.objects.order_by()
        cached = {
            "families": sorted(v for v in entries.values_list("base_family", flat=True).distinct() if v),
            "licenses": sorted(v for v in entries.values_list("license", flat=True).distinct() if v),
        }
        cache.set("leaderboard:filter-choices", cached, FILTER_CHOICES_TTL)
    return cached


def sort_keys() -> list[str]:
    return ["average", "repo_id", "delta", "badge", *leaderboard_benchmarks()]


class LeaderboardQuery(forms.Form):
    """The leaderboard's GET parameters; anything else than these shapes is a 400."""

    q = forms.CharField(required=False, max_length=100)
    size = forms.ChoiceField(required=False, choices=[("", "any size"), *((s, s) for s, _ in SIZE_CLASSES)])
    family = forms.CharField(required=False, max_length=100)
    license = forms.CharField(required=False, max_length=100)
    hide_flagged = forms.BooleanField(required=False)
    sort = forms.CharField(required=False, max_length=80)
    page = forms.IntegerField(required=False, min_value=1)

    def clean_sort(self) -> str:
        value = self.cleaned_data.get("sort") or "-average"
        if value.lstrip("-") not in sort_keys():
            raise forms.ValidationError(f"unknown sort column {value!r}; use one of {', '.join(sort_keys())}")
        return value


def _ordering(sort: str) -> list[Any]:
    """ORDER BY for a ?sort= value; descending numeric sorts use the indexed expressions of
    LeaderboardEntry (missing values last either way)."""
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key in ("repo_id", "badge"):
        return [F(key).desc() if descending else F(key).asc(), "id"]
    column = "max_delta" if key == "delta" else key
    if descending:
        return [entry_sort_value(column).desc(), "id"]
    return [entry_sort_value(column, missing=-MISSING_SORT_VALUE).asc(), "id"]


FILTER_PARAMS = ("q", "size", "family", "license", "hide_flagged")


def board_count(params: dict[str, Any], entries: QuerySet) -> int:
    """Rows matching the filters (sort and page do not change it), cached like the fragments so
    paging and re-sorting a large board does not COUNT(*) every time."""
    filters = "&".join(f"{name}={params.get(name) or ''}" for name in FILTER_PARAMS)
    return cache.get_or_set(board_cache_key("count", filters), entries.count, BOARD_CACHE_SECONDS)


class CountedPaginator(Paginator):
    def __init__(self, object_list: QuerySet, per_page: int, count: int):
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count  # Paginator.count is a cached_property: pre-fill it


def leaderboard_queryset(params: dict[str, Any]) -> QuerySet:
    entries = LeaderboardEntry.objects.all()
    if params.get("q"):
        entries = entries.filter(repo_id__icontains=params["q"])
    if params.get("size"):
        entries = entries.filter(size_class=params["size"])
    if params.get("family"):
        entries = entries.filter(base_family=params["family"])
    if params.get("license"):
        entries = entries.filter(license=params["license"])
    if params.get("hide_flagged"):
        entries = entries.exclude(badge="flagged")
    return entries.order_by(*_ordering(params.get("sort") or "-average"))


@dataclass(frozen=True)
class BoardRow:
    rank: int
    entry: LeaderboardEntry
    cells: list[str]  # formatted scores, one per standard benchmark
    average: str
    delta: str


def _points(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def board_fragment(params: dict[str, Any], query_string: str) -> str:
    """The ranked table (rows + pager) for these parameters. Rendering 50 rows is most of the
    page's cost, so the fragment is cached briefly (see BOARD_CACHE_SECONDS); it holds nothing
    user-specific."""
    key = board_cache_key("page", query_string)
    html = cache.get(key)
    if html is None:
        entries = leaderboard_queryset(params)
        paginator = CountedPaginator(entries, PAGE_SIZE, board_count(params, entries))
        try:
            page = paginator.page(params.get("page") or 1)
        except EmptyPage:
            raise Http404("No such page of the leaderboard.") from None
        benchmarks = leaderboard_benchmarks()
        rows = [
            BoardRow(
                rank=page.start_index() + i, entry=entry,
                cells=[_points(entry.scores.get(slug)) for slug in benchmarks],
                average=_points(entry.average),
                delta="—" if entry.max_delta is None else f"{entry.max_delta:+.1f}",
            )
            for i, entry in enumerate(page.object_list)
        ]
        base_query = QueryDict(query_string, mutable=True)
        base_query.pop("page", None)
        html = render_to_string("leaderboard/_board.html", {
            "rows": rows, "page": page, "benchmarks": benchmarks, "params": params,
            "sort": params.get("sort") or "-average", "base_query": base_query.urlencode(),
        })
        cache.set(key, html, BOARD_CACHE_SECONDS)
    return html


@require_GET
def leaderboard(request: HttpRequest) -> HttpResponse:
    query = LeaderboardQuery(request.GET)
    if not query.is_valid():
        return _bad_request(request, query.errors)
    params = query.cleaned_data
    board = board_fragment(params, request.GET.urlencode())
    if request.htmx:
        return HttpResponse(board)
    context = {
        "board": board,
        "benchmarks": leaderboard_benchmarks(),
        "params": params,
        "choices": filter_choices(),
        "size_classes": [label for label, _ in SIZE_CLASSES],
        "sort": params.get("sort") or "-average",
    }
    return render(request, "leaderboard/leaderboard.html", context)


def _bad_request(request: HttpRequest, errors: Any) -> HttpResponse:
    return render(request, "leaderboard/bad_request.html", {"errors": errors}, status=400)


@require_GET
def plots_page(request: HttpRequest) -> HttpResponse:
    key = board_cache_key("plots", "")
    context = cache.get(key)
    if context is None:  # one pass over the precomputed rows, shared for BOARD_CACHE_SECONDS
        entries = list(LeaderboardEntry.objects.values("repo_id", "scores", "claimed", "verdicts"))
        points = plots.claim_points(entries)
        gaps = plots.heldout_points(entries)
        context = {
            "claims_plot": plots.claimed_vs_measured(points) if points else "",
            "n_claims": len(points),
            "n_inconsistent": sum(1 for p in points if p.verdict == "inconsistent"),
            "gap_plot": plots.heldout_gap(gaps) if gaps else "",
            "heldout_pair": plots.HELDOUT_PAIRS[0],
        }
        cache.set(key, context, BOARD_CACHE_SECONDS)
    return render(request, "leaderboard/plots.html", context)


# --- accounts ------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}.")
        return redirect("submit")
    context = {"form": form, "hf_oauth": oauth.enabled()}
    return render(request, "registration/signup.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None)
    new_key = None
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "leaderboard/tokens.html", {"form": form, "tokens": []}, status=400)
        new_key = "vty_" + secrets.token_urlsafe(32)
        ApiToken.objects.create(
            user=request.user, name=form.cleaned_data["name"], prefix=new_key[:12],
            key_hash=hashlib.sha256(new_key.encode()).hexdigest(),
        )
    tokens = ApiToken.objects.filter(user=request.user).order_by("-created")
    return render(request, "leaderboard/tokens.html", {"form": ApiTokenForm(), "tokens": tokens, "new_key": new_key})


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    deleted, _ = ApiToken.objects.filter(pk=token_id, user=request.user).delete()
    if not deleted:
        raise Http404("No such token of yours.")
    return redirect("api_tokens")


# --- submitting ----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def submit(request: HttpRequest) -> HttpResponse:
    form = SubmissionForm(request.POST or None, user=request.user, initial={"revision": "main"})
    if request.method == "POST":
        if form.is_valid():
            try:
                submission = do_create_submission(request.user, form.payload or {})
            except SubmissionError as exc:  # lost a race (rate limit, duplicate) since validation
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Submitted {submission.repo_id}; verification is queued.")
                return redirect("submission_status", pk=submission.pk)
        return render(request, "leaderboard/submit.html", {"form": form}, status=400)
    return render(request, "leaderboard/submit.html", {"form": form})


@login_required
@require_GET
def submit_card_claims(request: HttpRequest) -> HttpResponse:
    """htmx partial: the scores the repo's card states, offered as claims for the author to confirm."""
    repo_id = request.GET.get("repo_id", "")
    revision = request.GET.get("revision", "") or "main"
    try:
        found = card_claims(repo_id, revision)
    except SubmissionError as exc:
        return render(request, "leaderboard/_card_claims.html", {"error": exc.message}, status=400)
    return render(request, "leaderboard/_card_claims.html", {"found": found, "repo_id": repo_id})


@login_required
@require_GET
def my_submissions(request: HttpRequest) -> HttpResponse:
    submissions = ModelSubmission.objects.filter(submitter=request.user).order_by("-created_at")[:200]
    return render(request, "leaderboard/my_submissions.html", {"submissions": submissions})


@login_required
@require_POST
def withdraw_submission(request: HttpRequest, pk: int) -> HttpResponse:
    submission = get_object_or_404(ModelSubmission, pk=pk)
    try:
        check_author(request.user, submission)
    except PermissionError as exc:
        return HttpResponse(str(exc), status=403, content_type="text/plain")
    if submission.status not in PENDING_STATUSES:
        return HttpResponse("Only a submission still waiting or running can be withdrawn.", status=409,
                            content_type="text/plain")
    submission.status = ModelSubmission.Status.REJECTED
    submission.rejection_reason = "withdrawn by the author"
    submission.save(update_fields=["status", "rejection_reason", "updated_at"])
    messages.info(request, "Submission withdrawn.")
    return redirect("submission_status", pk=pk)


# --- run status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkProgress:
    slug: str
    done: int
    total: int | None
    finished: bool

    @property
    def percent(self) -> int:
        if self.finished:
            return 100
        return int(100 * self.done / self.total) if self.total else 0


def benchmark_progress(run: EvaluationRun) -> list[BenchmarkProgress]:
    """Per planned benchmark: finished ones from their results, the others from the per-item
    rows stored so far (one grouped query)."""
    from django.db.models import Count

    finished = {r["benchmark"]: r["n"] for r in run.results.values("benchmark", "n")}
    stored = dict(run.samples.order_by().values_list("benchmark").annotate(c=Count("id")).values_list("benchmark", "c"))
    rows = []
    for planned in run.benchmarks or []:
        slug = planned.get("slug") or planned.get("benchmark") or "?"
        total = planned.get("limit") or planned.get("n") or planned.get("total") or run.limit
        if slug in finished:
            rows.append(BenchmarkProgress(slug, finished[slug], finished[slug], True))
        else:
            done = stored.get(slug, 0)
            if slug == run.current_benchmark and not stored.get(slug) and run.progress_total and not total:
                done, total = run.progress_done, run.progress_total
            rows.append(BenchmarkProgress(slug, done, total, False))
    return rows


def eta_seconds(run: EvaluationRun) -> int | None:
    if run.status != EvaluationRun.Status.RUNNING or not run.started_at or not run.progress_done:
        return None
    elapsed = (timezone.now() - run.started_at).total_seconds()
    remaining = run.progress_total - run.progress_done
    return max(0, int(elapsed / run.progress_done * remaining))


def _status_context(request: HttpRequest, submission: ModelSubmission) -> dict[str, Any]:
    runs = list(submission.runs.order_by("-created_at", "-id")[:10])
    current = runs[0] if runs else None
    finished = submission.status not in PENDING_STATUSES and (
        current is None or current.status in (EvaluationRun.Status.DONE, EvaluationRun.Status.FAILED)
    )
    return {
        "submission": submission,
        "run": current,
        "runs": runs,
        "progress": benchmark_progress(current) if current else [],
        "eta": eta_seconds(current) if current else None,
        "overall_percent": int(100 * current.progress_done / current.progress_total)
        if current and current.progress_total else (100 if finished else 0),
        "finished": finished,
        "log": (current.log or [])[-50:] if current else [],
        "is_author": request.user.is_authenticated and submission.submitter_id == request.user.pk,
    }


@require_GET
def submission_status(request: HttpRequest, pk: int) -> HttpResponse:
    submission = get_object_or_404(ModelSubmission.objects.select_related("submitter"), pk=pk)
    context = _status_context(request, submission)
    context["claims"] = list(submission.claims.order_by("benchmark"))
    return render(request, "leaderboard/submission_status.html", context)


@require_GET
def submission_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """htmx partial polled by the status page; once finished it renders without the poll trigger."""
    submission = get_object_or_404(ModelSubmission, pk=pk)
    return render(request, "leaderboard/_progress.html", _status_context(request, submission))


# --- model page --------------------------------------------------------------------------------------

REPORT_SECTIONS = ("provenance", "contamination", "endpoint")


@dataclass(frozen=True)
class ResultRow:
    result: BenchmarkResult
    claimed: float | None
    delta: float | None
    base_measured: float | None
    uplift: float | None


def _template_exists(name: str) -> bool:
    try:
        get_template(name)
    except TemplateDoesNotExist:
        return False
    return True


def _base_measurements(submission: ModelSubmission) -> dict[str, float]:
    """The claimed base's measurement per benchmark, same harness: what the pipeline compared
    (the report's `base` section), else the latest finished base run stored for it."""
    section = (submission.report or {}).get("base") or {}
    if section:
        return {slug: float(row["measured"]) for slug, row in section.items()
                if isinstance(row, dict) and isinstance(row.get("measured"), (int, float))}
    runs = EvaluationRun.objects.filter(role=EvaluationRun.Role.BASE, status=EvaluationRun.Status.DONE)
    if submission.claimed_base:
        runs = runs.filter(Q(submission=submission) | Q(model_repo=submission.claimed_base))
    else:
        runs = runs.filter(submission=submission)
    base_run = runs.order_by("-finished_at", "-id").first()
    if base_run is None:
        return {}
    return {r.benchmark: r.measured for r in base_run.results.order_by("id")}


def _result_rows(submission: ModelSubmission, run: EvaluationRun | None) -> list[ResultRow]:
    if run is None:
        return []
    claims = {claim.benchmark: claim.score for claim in submission.claims.all()}
    base = _base_measurements(submission)
    rows = []
    for result in run.results.order_by("benchmark", "id"):
        claimed = result.claimed if result.claimed is not None else claims.get(result.benchmark)
        base_measured = base.get(result.benchmark)
        rows.append(
            ResultRow(
                result=result,
                claimed=claimed,
                delta=None if claimed is None else claimed - result.measured,
                base_measured=base_measured,
                uplift=None if base_measured is None else result.measured - base_measured,
            )
        )
    return rows


def reproduce_command(submission: ModelSubmission, run: EvaluationRun | None) -> str:
    """The command line that repeats this run with the CLI (same model sha, benchmarks, limit,
    backend); the claims file it needs is shown next to it."""
    parts = ["python", "manage.py", "verify", submission.repo_id]
    revision = submission.pinned_sha or submission.requested_revision
    parts += ["--revision", revision]
    if run is not None:
        slugs = [b.get("slug") or b.get("benchmark") for b in (run.benchmarks or []) if isinstance(b, dict)]
        if slugs:
            parts += ["--benchmarks", ",".join(s for s in slugs if s)]
        if run.limit:
            parts += ["--limit", str(run.limit)]
        if run.backend:
            parts += ["--backend", run.backend]
    if submission.claimed_base:
        parts += ["--base", submission.claimed_base]
    parts += ["--claims", "claims.json"]
    return shlex.join(parts)


def claims_file(submission: ModelSubmission) -> str:
    document: dict[str, Any] = {
        "training": submission.training,
        "claims": [{"benchmark": c.benchmark, "score": c.score, **c.setup()} for c in submission.claims.all()],
    }
    if submission.claimed_base:
        document["base_model"] = submission.claimed_base
    if submission.endpoint_url:
        document["endpoint"] = submission.endpoint_url
    if submission.endpoint_model:
        document["endpoint_model"] = submission.endpoint_model
    return json.dumps(document, indent=2)


def _model_submission(repo_id: str, submission_id: str | None) -> ModelSubmission:
    submissions = ModelSubmission.objects.filter(repo_id=repo_id).select_related("submitter", "entry")
    if submission_id:
        if not submission_id.isdigit():
            raise Http404("No such submission.")
        return get_object_or_404(submissions, pk=int(submission_id))
    # The published revision if there is one, else the latest submission.
    chosen = submissions.filter(entry__isnull=False).order_by("-created_at").first()
    chosen = chosen or submissions.order_by("-created_at").first()
    if chosen is None:
        raise Http404(f"No submission of {repo_id}.")
    return chosen


@require_GET
def model_page(request: HttpRequest, org: str, name: str) -> HttpResponse:
    repo_id = f"{org}/{name}"
    submission = _model_submission(repo_id, request.GET.get("submission"))
    submission.claims_list = list(submission.claims.order_by("benchmark"))  # type: ignore[attr-defined]
    run = (
        submission.runs.filter(role=EvaluationRun.Role.SUBMISSION, status=EvaluationRun.Status.DONE)
        .order_by("-finished_at", "-id").first()
    )
    rows = _result_rows(submission, run)
    # Which flags the public sees, and in which words, is triage's rule (one place).
    flags = triage_service.public_flags_for(submission)
    report = submission.report or {}
    sections = [
        {"name": name_, "data": report.get(name_), "template": f"includes/{name_}.html",
         "has_template": _template_exists(f"includes/{name_}.html")}
        for name_ in REPORT_SECTIONS
    ]
    history = list(
        ModelSubmission.objects.filter(repo_id=repo_id).order_by("-created_at")
        .values("id", "requested_revision", "pinned_sha", "status", "created_at", "finished_at")[:50]
    )
    runs = list(
        EvaluationRun.objects.filter(submission__repo_id=repo_id).order_by("-created_at")
        .values("id", "submission_id", "role", "model_sha", "backend", "status", "limit", "created_at", "finished_at")[:50]
    )
    ci_rows = [
        plots.CiRow(r.result.benchmark, r.result.measured, r.result.ci_low, r.result.ci_high, r.claimed,
                    r.base_measured)
        for r in rows
    ]
    public_benchmarks = sorted({r.result.benchmark for r in rows if not r.result.private})
    context = {
        "submission": submission,
        "repo_id": repo_id,
        "entry": getattr(submission, "entry", None) if _has_entry(submission) else None,
        "run": run,
        "rows": rows,
        "flags": flags,
        "is_author": request.user.is_authenticated and submission.submitter_id == request.user.pk,
        "sections": sections,
        "report": report,
        "history": history,
        "runs": runs,
        "ci_plot": plots.model_ci_chart(ci_rows, f"{repo_id}: measured vs claimed") if ci_rows else "",
        "public_benchmarks": public_benchmarks,
        "heldout_figure": plots.contamination_heldout_figure(report.get("contamination")),
        "reproduce": reproduce_command(submission, run),
        "claims_json": claims_file(submission),
    }
    return render(request, "leaderboard/model.html", context)


def _has_entry(submission: ModelSubmission) -> bool:
    try:
        return submission.entry is not None
    except LeaderboardEntry.DoesNotExist:
        return False


class SampleQuery(forms.Form):
    submission = forms.IntegerField(min_value=1)
    benchmark = forms.SlugField(max_length=64)
    show = forms.ChoiceField(required=False, choices=[("", "all"), ("wrong", "wrong"), ("errored", "errored")])
    page = forms.IntegerField(required=False, min_value=1)


@require_GET
def model_samples(request: HttpRequest, org: str, name: str) -> HttpResponse:
    """Per-item explorer (htmx partial) for PUBLIC benchmarks; a private benchmark's items are
    never read, only its aggregates are shown on the page."""
    query = SampleQuery(request.GET)
    if not query.is_valid():
        return _bad_request(request, query.errors)
    params = query.cleaned_data
    submission = get_object_or_404(ModelSubmission, pk=params["submission"], repo_id=f"{org}/{name}")
    run = (
        submission.runs.filter(role=EvaluationRun.Role.SUBMISSION, status=EvaluationRun.Status.DONE)
        .order_by("-finished_at", "-id").first()
    )
    result = run.results.filter(benchmark=params["benchmark"]).order_by("id").first() if run else None
    if result is None:
        raise Http404("No measurement of that benchmark in this run.")
    if result.private:
        return render(request, "leaderboard/_samples.html", {"private": True, "result": result}, status=403)
    samples = SampleResult.objects.filter(run=run, benchmark=result.benchmark, setup_key=result.setup_key)
    if params.get("show") == "wrong":
        samples = samples.filter(correct=False)
    elif params.get("show") == "errored":
        samples = samples.filter(error__isnull=False)
    paginator = Paginator(samples.order_by("index"), SAMPLES_PAGE_SIZE)
    try:
        page = paginator.page(params.get("page") or 1)
    except EmptyPage:
        raise Http404("No such page of samples.") from None
    context = {"page": page, "result": result, "params": params, "org": org, "name": name}
    return render(request, "leaderboard/_samples.html", context)


class LoginView(auth_views.LoginView):
    """Django's login, plus the "Sign in with Hugging Face" link when OAuth is configured."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["hf_oauth"] = oauth.enabled()
        return context
