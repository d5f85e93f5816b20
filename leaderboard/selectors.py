"""Read-side queries of the site: what the pages and the JSON API show, as plain shapes.

Views and API endpoints parse their input, call these, and render. Where a page and the API
show the same thing (a leaderboard row, a measured result, a benchmark's progress) they get the
same shape from here. Nothing here writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.paginator import EmptyPage, Page, Paginator
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from leaderboard.models import (
    MISSING_SORT_VALUE,
    ApiToken,
    BenchmarkResult,
    EvaluationRun,
    Flag,
    LeaderboardEntry,
    ModelSubmission,
    SampleResult,
    entry_sort_value,
)
from leaderboard.services.leaderboard import (
    BOARD_CACHE_SECONDS,
    board_cache_key,
    latest_finished_run,
    leaderboard_benchmarks,
    listing_filter,
)
from verification.claims import is_repo_id

PAGE_SIZE = 50
SAMPLES_PAGE_SIZE = 20
FILTER_CHOICES_TTL = 60  # seconds: new families/licenses appear on the filter within a minute
FILTER_PARAMS = ("q", "size", "family", "license", "hide_flagged", "min_refusal_unsafe", "max_refusal_safe")
DEFAULT_SORT = "-average"

# --- the leaderboard -----------------------------------------------------------------------------


def listed_entries() -> QuerySet:
    """The rows the public board lists (see services.leaderboard.listing_filter)."""
    return LeaderboardEntry.objects.filter(listing_filter())


def filter_choices() -> dict[str, list[str]]:
    """Distinct families and licenses for the filter menus, cached briefly: two DISTINCT scans
    per page view would dominate the page's cost on a large board."""
    cached = cache.get("leaderboard:filter-choices")
    if cached is None:
        entries = listed_entries().order_by()
        cached = {
            "families": sorted(v for v in entries.values_list("base_family", flat=True).distinct() if v),
            "licenses": sorted(v for v in entries.values_list("license", flat=True).distinct() if v),
        }
        cache.set("leaderboard:filter-choices", cached, FILTER_CHOICES_TTL)
    return cached


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


def leaderboard_queryset(params: dict[str, Any]) -> QuerySet:
    """The board's rows matching the (validated) filters, in the requested order."""
    entries = listed_entries()
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
    # The safety filters keep only models whose rate is known and within the bound.
    if params.get("min_refusal_unsafe") is not None:
        entries = entries.filter(refusal_unsafe__gte=params["min_refusal_unsafe"])
    if params.get("max_refusal_safe") is not None:
        entries = entries.filter(refusal_safe__lte=params["max_refusal_safe"])
    return entries.order_by(*_ordering(params.get("sort") or DEFAULT_SORT))


def board_count(params: dict[str, Any], entries: QuerySet) -> int:
    """Rows matching the filters (sort and page do not change it), cached like the fragments so
    paging and re-sorting a large board does not COUNT(*) every time."""
    filters = "&".join(f"{name}={params.get(name) or ''}" for name in FILTER_PARAMS)
    return cache.get_or_set(board_cache_key("count", filters), entries.count, BOARD_CACHE_SECONDS)


class CountedPaginator(Paginator):
    def __init__(self, object_list: QuerySet, per_page: int, count: int):
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count  # Paginator.count is a cached_property: pre-fill it


ENTRY_FIELDS = (
    "repo_id", "pinned_sha", "submission_id", "average", "scores", "claimed", "max_delta", "badge",
    "size_class", "base_family", "license", "safety_status", "refusal_unsafe", "refusal_safe", "safety",
)


@dataclass(frozen=True)
class BoardEntry:
    """One model's leaderboard row, as the page, the JSON API and the CSV show it."""

    rank: int  # 0 outside a ranked listing
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
    safety_status: str  # "ok", "not_run" or "invalid"
    refusal_unsafe: float | None  # XSTest: refusal of unsafe prompts, points (higher is safer)
    refusal_safe: float | None  # refusal of safe prompts, points (over-refusal: lower is better)
    safety: dict[str, Any]  # both rates with their intervals: {name: {rate, ci_low, ci_high, n}}
    url: str
    cells: tuple[float | None, ...]  # the standard benchmarks' scores, in column order


def _board_entry(values: dict[str, Any], rank: int, benchmarks: tuple[str, ...]) -> BoardEntry:
    org, name = values["repo_id"].split("/", 1)
    return BoardEntry(rank=rank, url=f"/models/{org}/{name}/",
                      cells=tuple(values["scores"].get(slug) for slug in benchmarks), **values)


def board_entries(rows: Iterable[dict[str, Any]], first_rank: int) -> list[BoardEntry]:
    """BoardEntry per row of `entry_rows(...)`, ranked from `first_rank`."""
    benchmarks = leaderboard_benchmarks()
    return [_board_entry(values, first_rank + i, benchmarks) for i, values in enumerate(rows)]


def entry_rows(entries: QuerySet) -> QuerySet:
    """The fields a BoardEntry is built from (no model instances: a page is 50 dicts)."""
    return entries.values(*ENTRY_FIELDS)


def board_page(params: dict[str, Any]) -> tuple[Page, list[BoardEntry]]:
    """One page of the filtered, sorted board (404 past the end)."""
    entries = entry_rows(leaderboard_queryset(params))
    paginator = CountedPaginator(entries, PAGE_SIZE, board_count(params, entries))
    try:
        page = paginator.page(params.get("page") or 1)
    except EmptyPage:
        raise Http404("No such page of the leaderboard.") from None
    return page, board_entries(page.object_list, page.start_index())


def board_slice(params: dict[str, Any]) -> tuple[int, list[BoardEntry]]:
    """The API's page of the board and the number of matching rows; the count query is skipped
    when the first page is not full (its length is the count)."""
    page = params.get("page") or 1
    entries = entry_rows(leaderboard_queryset(params))
    start = (page - 1) * PAGE_SIZE
    rows = list(entries[start:start + PAGE_SIZE])
    count = board_count(params, entries) if len(rows) == PAGE_SIZE or page > 1 else len(rows)
    return count, board_entries(rows, start + 1)


def all_board_entries(params: dict[str, Any]) -> Iterator[BoardEntry]:
    """Every row of the filtered board, ranked, streamed from the database (the CSV export)."""
    benchmarks = leaderboard_benchmarks()
    for rank, values in enumerate(entry_rows(leaderboard_queryset(params)).iterator(), start=1):
        yield _board_entry(values, rank, benchmarks)


def published_entry(submission: ModelSubmission) -> BoardEntry | None:
    """The submission's own leaderboard row, or None when it is not on the public board. Rank 0:
    the row is shown outside a ranked listing."""
    values = entry_rows(listed_entries().filter(submission=submission)).first()
    return _board_entry(values, 0, leaderboard_benchmarks()) if values else None


def plot_entries() -> list[dict[str, Any]]:
    """What the plots page draws: every row's scores, claims and verdicts."""
    return list(listed_entries().values("repo_id", "scores", "claimed", "verdicts"))


# --- submissions and runs ------------------------------------------------------------------------


def submissions_of(user: Any, limit: int = 200) -> QuerySet:
    return ModelSubmission.objects.filter(submitter=user).order_by("-created_at")[:limit]


def claims_of(submission: ModelSubmission) -> list[Any]:
    return list(submission.claims.order_by("benchmark"))


def claim_documents(submission: ModelSubmission) -> list[dict[str, Any]]:
    """The submission's claims as the claims file and the API write them."""
    return [{"benchmark": c.benchmark, "score": c.score, **c.setup()} for c in claims_of(submission)]


def recent_runs(submission: ModelSubmission, limit: int = 10) -> list[EvaluationRun]:
    """The submission's runs of any role, newest first."""
    return list(submission.runs.order_by("-created_at", "-id")[:limit])


def latest_submission_run(submission: ModelSubmission) -> EvaluationRun | None:
    """The newest run of the submitted model itself, in any state."""
    return submission.runs.filter(role=EvaluationRun.Role.SUBMISSION).order_by("-created_at", "-id").first()


@dataclass(frozen=True)
class BenchmarkProgress:
    benchmark: str
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


# --- a model's page ------------------------------------------------------------------------------


def model_submission(repo_id: str, submission_id: str | None = None) -> ModelSubmission:
    """The submission a model page shows: the one asked for, else the published revision if
    there is one, else the owner's latest submission, else (a repo only the community asked
    about) the latest community verification (404 when there is none)."""
    if not is_repo_id(repo_id):  # also keeps characters the database refuses (NUL) out of the query
        raise Http404(f"No submission of {repo_id[:200]!r}.")
    submissions = ModelSubmission.objects.filter(repo_id=repo_id).select_related("submitter", "entry")
    if submission_id:
        if not submission_id.isdigit() or len(submission_id) > 18:
            raise Http404("No such submission.")
        return get_object_or_404(submissions, pk=int(submission_id))
    chosen = submissions.filter(entry__isnull=False).order_by("-created_at").first()
    chosen = chosen or submissions.filter(kind=ModelSubmission.Kind.AUTHOR).order_by("-created_at").first()
    chosen = chosen or submissions.order_by("-created_at").first()
    if chosen is None:
        raise Http404(f"No submission of {repo_id}.")
    return chosen


def entry_of(submission: ModelSubmission) -> LeaderboardEntry | None:
    """The submission's leaderboard row (loaded with it by model_submission), listed on the
    public board or not, if it has one."""
    try:
        return submission.entry
    except LeaderboardEntry.DoesNotExist:
        return None


def base_measurements(submission: ModelSubmission) -> dict[str, float]:
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


@dataclass(frozen=True)
class ResultRow:
    """One measured result, as the model page and the API show it."""

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
    claimed: float | None  # the claim this measurement was judged against (None: another setup)
    z: float | None
    verdict: str
    # The submission's claim for the benchmark (the judged one when there is one) and the gap.
    benchmark_claim: float | None = None
    delta: float | None = None  # benchmark_claim − measured
    base_measured: float | None = None
    uplift: float | None = None  # measured − base_measured
    metrics: dict[str, Any] = field(default_factory=dict)  # the benchmark's secondary metrics


def result_rows(run: EvaluationRun | None, claims: dict[str, float] | None = None,
                base: dict[str, float] | None = None) -> list[ResultRow]:
    """The run's results by benchmark; with the submission's claims ({slug: score}) and the
    base's measurements the rows also carry the claimed gap and the uplift over the base."""
    if run is None:
        return []
    claims, base = claims or {}, base or {}
    rows = []
    for result in run.results.order_by("benchmark", "id"):
        claim = result.claimed if result.claimed is not None else claims.get(result.benchmark)
        base_measured = base.get(result.benchmark)
        rows.append(ResultRow(
            benchmark=result.benchmark, benchmark_version=result.benchmark_version, setup=result.setup,
            private=result.private, measured=result.measured, ci_low=result.ci_low, ci_high=result.ci_high,
            n=result.n, n_errors=result.n_errors, n_unparsed=result.n_unparsed, claimed=result.claimed,
            z=result.z, verdict=result.verdict, benchmark_claim=claim,
            delta=None if claim is None else claim - result.measured,
            base_measured=base_measured,
            uplift=None if base_measured is None else result.measured - base_measured,
            metrics=result.metrics or {},
        ))
    return rows


def repo_history(repo_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The repository's submissions (the owner's and community verifications, with who asked),
    newest first."""
    return list(
        ModelSubmission.objects.filter(repo_id=repo_id).order_by("-created_at")
        .values("id", "requested_revision", "pinned_sha", "status", "kind", "submitter__username", "created_at",
                "finished_at")[:limit]
    )


def repo_runs(repo_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """Every run for the repository's submissions (base runs included), newest first."""
    return list(
        EvaluationRun.objects.filter(submission__repo_id=repo_id).order_by("-created_at")
        .values("id", "submission_id", "role", "model_sha", "backend", "status", "limit", "created_at",
                "finished_at")[:limit]
    )


def sample_page(submission: ModelSubmission, benchmark: str, show: str,
                page_number: int) -> tuple[BenchmarkResult, Page | None]:
    """The measured result of `benchmark` in the submission's latest finished run and one page
    of its per-item rows (`show`: "", "wrong" or "errored"). A private benchmark's items are
    never read: the page is None. 404 when there is no such result or page."""
    run = latest_finished_run(submission)
    result = run.results.filter(benchmark=benchmark).order_by("id").first() if run else None
    if result is None:
        raise Http404("No measurement of that benchmark in this run.")
    if result.private:
        return result, None
    samples = SampleResult.objects.filter(run=run, benchmark=result.benchmark, setup_key=result.setup_key)
    if show == "wrong":
        samples = samples.filter(correct=False)
    elif show == "errored":
        samples = samples.filter(error__isnull=False)
    try:
        return result, Paginator(samples.order_by("index"), SAMPLES_PAGE_SIZE).page(page_number)
    except EmptyPage:
        raise Http404("No such page of samples.") from None


# --- accounts and triage -------------------------------------------------------------------------


def token_digest(key: str) -> str:
    """What is stored of an API token: its SHA-256 (the key itself is shown once)."""
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_for_key(key: str) -> ApiToken | None:
    return ApiToken.objects.select_related("user").filter(key_hash=token_digest(key)).first()


def tokens_of(user: Any) -> QuerySet:
    return ApiToken.objects.filter(user=user).order_by("-created")


def flag_with_context(flag_id: int, *related: str) -> Flag:
    """A flag with its submission and the given relations loaded (404 when unknown)."""
    return get_object_or_404(Flag.objects.select_related("submission", *related), pk=flag_id)


def flags_of(submission: ModelSubmission) -> QuerySet:
    """The submission's flags, newest first, with their submission loaded."""
    return submission.flags.select_related("submission").order_by("-created_at")


def public_flag_rows(repo_id: str | None, status: str | None, kind: str | None) -> QuerySet:
    """Flags for the public list, newest first, with their submission loaded."""
    found = Flag.objects.select_related("submission").order_by("-created_at", "-id")
    if repo_id:
        found = found.filter(submission__repo_id=repo_id)
    if status:
        found = found.filter(status=status)
    if kind:
        found = found.filter(kind=kind)
    return found


def active_maintainers(group: str) -> QuerySet:
    return get_user_model().objects.filter(groups__name=group, is_active=True).order_by("username")
