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
from django.db import connection
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
    headline_results,
    latest_finished_run,
    leaderboard_benchmarks,
    listing_filter,
    split_superseded,
)
from verification.claims import is_repo_id
from verification.vocabulary import INVALID

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
    """Distinct families and licenses for the filter menus, cached briefly, read in one query by
    skip scans of their indexes (a probe per distinct value, not a pass over every row)."""
    cached = cache.get("leaderboard:filter-choices")
    if cached is None:
        found = distinct_values(listed_entries(), {"families": "base_family", "licenses": "license"})
        cached = {name: sorted(found[name]) for name in ("families", "licenses")}
        cache.set("leaderboard:filter-choices", cached, FILTER_CHOICES_TTL)
    return cached


def distinct_values(entries: QuerySet, columns: dict[str, str]) -> dict[str, list[str]]:
    """{name: distinct non-empty values of column} over `entries`' rows, one query: a recursive
    CTE per column that steps from one value to the next through the column's btree index (the
    "loose index scan" PostgreSQL does not plan by itself). `entries` is filtered on its own
    table's columns only; `columns` are its field names, never user input. The embedded
    development database (SQLite) gets the plain DISTINCT: its rows are few."""
    if connection.vendor != "postgresql":
        return {
            name: list(entries.exclude(**{field_name: ""}).order_by(field_name)
                       .values_list(field_name, flat=True).distinct())
            for name, field_name in columns.items()
        }
    table = connection.ops.quote_name(entries.model._meta.db_table)
    query = entries.query
    where, params = query.get_compiler(using=entries.db).compile(query.where) if query.where else ("", [])
    condition = f" AND ({where})" if where else ""
    parts, all_params = [], []
    for name, field_name in columns.items():
        column = connection.ops.quote_name(entries.model._meta.get_field(field_name).column)
        step = f"SELECT {column} FROM {table} WHERE {column} > %s{condition} ORDER BY {column} LIMIT 1"
        parts.append(
            f"SELECT %s, v FROM (WITH RECURSIVE skip(v) AS (({step}) UNION ALL "
            f"SELECT ({step.replace('%s', 'skip.v', 1)}) FROM skip WHERE skip.v IS NOT NULL) "
            f"SELECT v FROM skip WHERE v IS NOT NULL) AS {connection.ops.quote_name(name)}"
        )
        all_params += [name, "", *params, *params]
    found: dict[str, list[str]] = {name: [] for name in columns}
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), all_params)
        for name, value in cursor.fetchall():
            found[name].append(value)
    return found


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


@dataclass(frozen=True)
class BoardCounts:
    total: int  # rows matching the filters
    complete: int  # of which complete: ranked first, the partial ones after them, apart


def board_counts(params: dict[str, Any], entries: QuerySet) -> BoardCounts:
    """Rows matching the filters, and how many are complete (sort and page change neither), in
    one query, cached like the fragments so paging and re-sorting a large board does not count
    every time."""
    filters = "&".join(f"{name}={params.get(name) or ''}" for name in FILTER_PARAMS)

    def count() -> tuple[int, int]:
        found = entries.order_by().aggregate(total=Count("*"), complete=Count("complete", filter=Q(complete=True)))
        return found["total"], found["complete"]

    total, complete = cache.get_or_set(board_cache_key("counts", filters), count, BOARD_CACHE_SECONDS)
    return BoardCounts(total, complete)


class GroupedRows:
    """The board in display order: every complete row (in the requested order), then every
    partial one (same order), never interleaved. A slice reads each group with its own query,
    so each is served by the sort's index; only a page that straddles the two groups reads both.
    Each item is (row, rank), the rank counted within the row's group."""

    def __init__(self, entries: QuerySet, counts: BoardCounts):
        self.complete = entries.filter(complete=True)
        self.partial = entries.filter(complete=False)
        self.counts = counts

    def count(self) -> int:
        return self.counts.total

    def __len__(self) -> int:
        return self.counts.total

    def __getitem__(self, key: slice) -> list[tuple[dict[str, Any], int]]:
        if not isinstance(key, slice):
            raise TypeError("the board is read a page (slice) at a time")
        n_complete = self.counts.complete
        start = key.start or 0
        stop = self.counts.total if key.stop is None else key.stop
        rows: list[tuple[dict[str, Any], int]] = []
        if start < n_complete:
            rows += [(row, start + i + 1) for i, row in enumerate(_window(self.complete, start, min(stop, n_complete)))]
        if stop > n_complete:
            first = max(0, start - n_complete)
            rows += [(row, first + i + 1) for i, row in enumerate(_window(self.partial, first, stop - n_complete))]
        return rows


def _window(rows: QuerySet, start: int, stop: int) -> QuerySet:
    """rows[start:stop], ordered, with the OFFSET walked over ids alone (a late row lookup): a deep
    page then sorts or skips narrow (key, id) tuples instead of whole rows with their JSON, and
    only the page's rows are read in full."""
    return rows.filter(id__in=rows.values("id")[start:stop])


class CountedPaginator(Paginator):
    def __init__(self, object_list: GroupedRows, per_page: int, count: int):
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count  # Paginator.count is a cached_property: pre-fill it


ENTRY_FIELDS = (
    "repo_id", "pinned_sha", "submission_id", "average", "complete", "scores", "claimed", "max_delta", "badge",
    "size_class", "base_family", "license", "safety_status", "refusal_unsafe", "refusal_safe", "safety",
)


@dataclass(frozen=True)
class BoardCell:
    """One standard benchmark's cell: the valid measurement, or none (not measured, or invalid)."""

    value: float | None
    invalid: bool = False  # measured, but the run was not a measurement (harness errors)


@dataclass(frozen=True)
class BoardEntry:
    """One model's leaderboard row, as the page, the JSON API and the CSV show it.

    A complete row's average covers every standard benchmark, each from a valid result; a
    partial row's average covers only the `n_benchmarks` valid standard results it has (labelled
    "partial: k of N"), and partial rows are ranked in a group of their own after the complete
    ones: `rank` counts within the row's group."""

    rank: int  # within its group (complete or partial); 0 outside a ranked listing
    repo_id: str
    pinned_sha: str
    submission_id: int
    average: float | None  # over the valid standard benchmarks the model has (all of them when complete)
    complete: bool  # the average covers the whole standard set, each from a valid result
    n_benchmarks: int  # standard benchmarks with a valid result (what the average covers)
    invalid: list[str]  # standard benchmarks whose result was invalid: no score, never averaged
    scores: dict[str, float]  # valid measurements only
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
    cells: tuple[BoardCell, ...]  # the standard benchmarks' scores, in column order

    @property
    def coverage(self) -> str:
        """Empty for a complete row, else "partial: k of N" (what its average covers)."""
        return "" if self.complete else f"partial: {self.n_benchmarks} of {len(self.cells)}"


def _board_entry(values: dict[str, Any], rank: int, benchmarks: tuple[str, ...]) -> BoardEntry:
    values = dict(values)
    verdicts = values.pop("verdicts", None) or {}
    scores = values["scores"]
    org, name = values["repo_id"].split("/", 1)
    invalid = [slug for slug in benchmarks if slug not in scores and verdicts.get(slug) == INVALID]
    cells = tuple(BoardCell(scores.get(slug), slug in invalid) for slug in benchmarks)
    return BoardEntry(rank=rank, url=f"/models/{org}/{name}/", cells=cells, invalid=invalid,
                      n_benchmarks=sum(1 for slug in benchmarks if slug in scores), **values)


def board_entries(rows: Iterable[tuple[dict[str, Any], int]]) -> list[BoardEntry]:
    """BoardEntry per (row of `entry_rows(...)`, rank)."""
    benchmarks = leaderboard_benchmarks()
    return [_board_entry(values, rank, benchmarks) for values, rank in rows]


def entry_rows(entries: QuerySet) -> QuerySet:
    """The fields a BoardEntry is built from (no model instances: a page is 50 dicts)."""
    return entries.values(*ENTRY_FIELDS, "verdicts")


def board_page(params: dict[str, Any]) -> tuple[Page, list[BoardEntry]]:
    """One page of the filtered, sorted board: complete rows first, then partial (404 past the end)."""
    entries = entry_rows(leaderboard_queryset(params))
    counts = board_counts(params, entries)
    paginator = CountedPaginator(GroupedRows(entries, counts), PAGE_SIZE, counts.total)
    try:
        page = paginator.page(params.get("page") or 1)
    except EmptyPage:
        raise Http404("No such page of the leaderboard.") from None
    return page, board_entries(page.object_list)


def board_slice(params: dict[str, Any]) -> tuple[int, list[BoardEntry]]:
    """The API's page of the board (complete rows first, then partial) and the number of
    matching rows."""
    page = params.get("page") or 1
    entries = entry_rows(leaderboard_queryset(params))
    counts = board_counts(params, entries)
    start = (page - 1) * PAGE_SIZE
    return counts.total, board_entries(GroupedRows(entries, counts)[start:start + PAGE_SIZE])


def all_board_entries(params: dict[str, Any]) -> Iterator[BoardEntry]:
    """Every row of the filtered board, complete ones then partial ones, each group ranked,
    streamed from the database (the CSV export)."""
    benchmarks = leaderboard_benchmarks()
    entries = entry_rows(leaderboard_queryset(params))
    for group in (entries.filter(complete=True), entries.filter(complete=False)):
        for rank, values in enumerate(group.iterator(), start=1):
            yield _board_entry(values, rank, benchmarks)


def published_entry(submission: ModelSubmission) -> BoardEntry | None:
    """The submission's own leaderboard row, or None when it is not on the public board. Rank 0:
    the row is shown outside a ranked listing."""
    values = entry_rows(listed_entries().filter(submission=submission)).first()
    return _board_entry(values, 0, leaderboard_benchmarks()) if values else None


def plot_entries() -> list[dict[str, Any]]:
    """What the plots page draws: every row's valid scores, claims and verdicts (an invalid
    result has no score, so it is never drawn as a measurement)."""
    return list(listed_entries().values("repo_id", "scores", "claimed", "verdicts", "complete"))


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
    # The submitter is read only for a community verification's label (then by its own query).
    submissions = ModelSubmission.objects.filter(repo_id=repo_id).select_related("entry")
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


def published_submissions(repo_ids: list[str]) -> dict[str, ModelSubmission]:
    """model_submission's first choice for several repos in one query: each repo's latest
    submission with a leaderboard row (repos without one are left out)."""
    found: dict[str, ModelSubmission] = {}
    published = (ModelSubmission.objects.filter(repo_id__in=[r for r in repo_ids if is_repo_id(r)], entry__isnull=False)
                 .select_related("entry").order_by("repo_id", "-created_at"))
    for submission in published:
        found.setdefault(submission.repo_id, submission)
    return found


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
    # Re-scoring: the version of the result that replaced this one ("": this one stands), and on
    # a standing row the earlier results of the same benchmark and setup it replaced, newest first.
    superseded_by: str = ""
    superseded: tuple[ResultRow, ...] = ()


def result_rows(run: EvaluationRun | None, claims: dict[str, float] | None = None,
                base: dict[str, float] | None = None) -> list[ResultRow]:
    """The run's standing results by benchmark, each with the results a re-scoring superseded
    folded under it (`superseded`; services.leaderboard.split_superseded): the summary, the
    plot and the API read the standing ones, the run record shows both. With the submission's
    claims ({slug: score}) and the base's measurements the rows also carry the claimed gap and
    the uplift over the base."""
    if run is None:
        return []
    claims, base = claims or {}, base or {}
    results = list(run.results.all())
    standing, superseded_by = split_superseded(results)
    replaced: dict[int, list[BenchmarkResult]] = {}
    for result in results:
        newer = superseded_by.get(result.id)
        while newer is not None and newer.id in superseded_by:  # v1 -> v2 -> v3: fold under v3
            newer = superseded_by[newer.id]
        if newer is not None:
            replaced.setdefault(newer.id, []).append(result)
    rows = []
    for result in sorted(standing, key=lambda item: (item.benchmark, item.id)):
        earlier = sorted(replaced.get(result.id, []), key=lambda item: -item.id)
        rows.append(_result_row(result, claims, base, superseded=tuple(
            _result_row(old, claims, base, superseded_by=superseded_by[old.id].benchmark_version) for old in earlier)))
    return rows


def _result_row(result: BenchmarkResult, claims: dict[str, float], base: dict[str, float], *,
                superseded_by: str = "", superseded: tuple[ResultRow, ...] = ()) -> ResultRow:
    claim = result.claimed if result.claimed is not None else claims.get(result.benchmark)
    base_measured = base.get(result.benchmark)
    return ResultRow(
        benchmark=result.benchmark, benchmark_version=result.benchmark_version, setup=result.setup,
        private=result.private, measured=result.measured, ci_low=result.ci_low, ci_high=result.ci_high,
        n=result.n, n_errors=result.n_errors, n_unparsed=result.n_unparsed, claimed=result.claimed,
        z=result.z, verdict=result.verdict, benchmark_claim=claim,
        delta=None if claim is None else claim - result.measured,
        base_measured=base_measured,
        uplift=None if base_measured is None else result.measured - base_measured,
        metrics=result.metrics or {}, superseded_by=superseded_by, superseded=superseded,
    )


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
    """The measured result of `benchmark` in the submission's latest finished run (the one the
    summary and the board show: services.leaderboard.headline_results, a re-scored result over
    the one it re-scored) and one page of its per-item rows (`show`: "", "wrong" or "errored";
    a row a re-scoring changed keeps its earlier scoring under details["rescored_from"]). A
    private benchmark's items are never read: the page is None. 404 when there is no such
    result or page."""
    run = latest_finished_run(submission)
    result = headline_results(run).get(benchmark) if run else None
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
