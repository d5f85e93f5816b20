"""Models side by side: claimed, measured (with intervals), base, flags and status per benchmark,
and, for two models measured on the same items, the paired difference with its interval.

The statistics are the engine's (verification.paired); this module only chooses what is paired.
Two results are paired only when they are the same test: same benchmark, same version, same
setup, same dataset content and the same item ids, both complete and both valid measurements.
Anything else reads "not comparable" with the reason, never a number.

Queries are bounded: a fixed handful per model, and per pair of models one aggregate query over
their per-item rows that returns only counts and sums per benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.http import Http404

from leaderboard import selectors
from leaderboard.models import BenchmarkResult, Claim, Flag, LeaderboardEntry, ModelSubmission, SampleResult
from leaderboard.services.leaderboard import badge_for, latest_headline_results
from leaderboard.services.triage import PUBLIC_LABELS
from verification import paired
from verification.claims import is_repo_id
from verification.compare import is_measurement

MIN_COMPARE_MODELS = 2
MAX_COMPARE_MODELS = 4
MAX_PARAM_CHARS = 1000


class CompareError(ValueError):
    """A compare request that cannot be answered; the message is safe to show."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _shown(value: str) -> str:
    return value if len(value) <= 80 else value[:80] + "…"


def check_compare_models(raw: str | None) -> list[str]:
    """The repo ids of `?models=a,b[,c]`: 2 to MAX_COMPARE_MODELS distinct well-formed ids."""
    if not raw or not raw.strip():
        raise CompareError(f"Name {MIN_COMPARE_MODELS} to {MAX_COMPARE_MODELS} models: ?models=org/a,org/b")
    if len(raw) > MAX_PARAM_CHARS:
        raise CompareError(f"The model list is too long (at most {MAX_PARAM_CHARS} characters).")
    repo_ids = [part.strip() for part in raw.split(",") if part.strip()]
    bad = [part for part in repo_ids if not is_repo_id(part)]
    if bad:
        raise CompareError(f"Not a model id (org/name): {', '.join(repr(_shown(b)) for b in bad[:4])}.")
    unique = list(dict.fromkeys(repo_ids))
    if len(unique) != len(repo_ids):
        raise CompareError("A model is named twice.")
    if not MIN_COMPARE_MODELS <= len(unique) <= MAX_COMPARE_MODELS:
        raise CompareError(f"Compare {MIN_COMPARE_MODELS} to {MAX_COMPARE_MODELS} models, not {len(unique)}.")
    return unique


@dataclass
class ModelColumn:
    repo_id: str
    submission: ModelSubmission
    entry: LeaderboardEntry | None
    status: str
    results: dict[str, BenchmarkResult]
    claims: dict[str, float]
    base: dict[str, float]
    flags: list[dict[str, Any]]


@dataclass(frozen=True)
class Cell:
    result: BenchmarkResult | None
    claimed: float | None
    base: float | None


@dataclass(frozen=True)
class PairedRow:
    """A − B on one benchmark, or why there is no such number."""

    a: str
    b: str
    difference: paired.PairedDifference | None
    not_comparable: str = ""


@dataclass
class BenchmarkRow:
    benchmark: str
    cells: list[Cell]
    pairs: list[PairedRow] = field(default_factory=list)


@dataclass
class Comparison:
    columns: list[ModelColumn]
    rows: list[BenchmarkRow]


def _public_flags(submission_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per submission, one line per flag the public sees (triage's rule: dismissed info flags
    are not shown); the badge is decided from the same rows."""
    flags = (Flag.objects.filter(submission_id__in=submission_ids)
             .exclude(status=Flag.Status.DISMISSED, severity=Flag.Severity.INFO).order_by("created_at", "id")
             .values("submission_id", "id", "kind", "severity", "benchmark", "summary", "status"))
    found: dict[int, list[dict[str, Any]]] = {pk: [] for pk in submission_ids}
    for row in flags:
        found[row.pop("submission_id")].append({**row, "label": PUBLIC_LABELS.get(row["status"], row["status"])})
    return found


def model_columns(repo_ids: list[str]) -> list[ModelColumn]:
    """The models' columns, read together: a fixed handful of queries for up to
    MAX_COMPARE_MODELS models (plus the base's run for a report without a base section)."""
    submissions = selectors.published_submissions(repo_ids)
    for repo_id in repo_ids:
        if repo_id not in submissions:  # no published revision: the page's other choices, one by one
            try:
                submissions[repo_id] = selectors.model_submission(repo_id)
            except Http404:
                raise CompareError(f"No model {repo_id!r} on Verity.", status=404) from None
    ids = [submissions[repo_id].pk for repo_id in repo_ids]
    results = latest_headline_results(ids)
    flags = _public_flags(ids)
    claims: dict[int, dict[str, float]] = {pk: {} for pk in ids}
    for submission_id, benchmark, score in Claim.objects.filter(submission_id__in=ids).order_by("id").values_list(
            "submission_id", "benchmark", "score"):
        claims[submission_id][benchmark] = score
    columns = []
    for repo_id in repo_ids:
        submission = submissions[repo_id]
        columns.append(ModelColumn(
            repo_id=repo_id,
            submission=submission,
            entry=selectors.entry_of(submission),
            status=badge_for(submission, flags[submission.pk]),
            results=results[submission.pk],
            claims=claims[submission.pk],
            base=selectors.base_measurements(submission),
            flags=flags[submission.pk],
        ))
    return columns


def comparable_reason(a: BenchmarkResult, b: BenchmarkResult) -> str:
    """Why two results are not the same test ("" when they are, pending the item ids)."""
    if a.benchmark_version != b.benchmark_version:
        return f"different items: {a.benchmark} version {a.benchmark_version} vs {b.benchmark_version}"
    if a.setup_key != b.setup_key:
        return "different items: measured under different setups"
    if a.dataset_hash and b.dataset_hash and a.dataset_hash != b.dataset_hash:
        return "different items: different dataset content"
    if a.n != b.n:
        return f"different items: {a.n} vs {b.n} items"
    if not (is_measurement(a.n, a.n_errors) and is_measurement(b.n, b.n_errors)):
        return "an invalid run (harness errors above the limit) is no measurement"
    return ""


# One aggregate over the two models' per-item rows, grouped by benchmark and item id: only sums
# per benchmark leave the database, one query per pair of models whatever the number of
# benchmarks. `wanted` names each side's (run, benchmark, setup) so each side's rows are read by
# the per-sample unique index; the group-by avoids joining the two sides on item id (that join
# became a nested loop on fresh tables: seconds per benchmark). The grouping compares bytes
# (COLLATE "C"): equality is all it needs, and a locale-aware sort was half the query's time.
# Scores are 0..1 (a DB constraint); errored and unparsed items are stored with 0.
PAIRED_SQL = f"""
WITH wanted(side, run_id, benchmark, setup_key) AS (
    SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[]))
SELECT benchmark,
       COALESCE(SUM(na), 0), COUNT(*) FILTER (WHERE na > 0),
       COALESCE(SUM(nb), 0), COUNT(*) FILTER (WHERE nb > 0),
       COUNT(*) FILTER (WHERE item_id = ''),
       COUNT(*) FILTER (WHERE na > 0 AND nb > 0),
       COUNT(*) FILTER (WHERE sa = 1 AND sb = 1),
       COUNT(*) FILTER (WHERE sa > sb),
       COUNT(*) FILTER (WHERE sb > sa),
       COUNT(*) FILTER (WHERE sa NOT IN (0, 1) OR sb NOT IN (0, 1)),
       COALESCE(SUM(sa - sb), 0),
       COALESCE(SUM((sa - sb) * (sa - sb)), 0)
FROM (
    SELECT s.benchmark COLLATE "C" AS benchmark, s.item_id COLLATE "C" AS item_id,
           COUNT(*) FILTER (WHERE w.side = 'a') AS na, COUNT(*) FILTER (WHERE w.side = 'b') AS nb,
           MAX(s.score) FILTER (WHERE w.side = 'a') AS sa, MAX(s.score) FILTER (WHERE w.side = 'b') AS sb
    FROM {SampleResult._meta.db_table} AS s
    JOIN wanted AS w ON s.run_id = w.run_id AND s.benchmark = w.benchmark AND s.setup_key = w.setup_key
    GROUP BY 1, 2
) AS per_item
GROUP BY benchmark
"""


def paired_summaries(pairs: list[tuple[BenchmarkResult, BenchmarkResult]]) -> dict[str, paired.PairedSummary | str]:
    """Per benchmark, the two results' per-item records summed over the items they share (one
    query for all of `pairs`, one pair of results per benchmark), or why they cannot be paired:
    records missing, item ids not distinct, or not the same items."""
    found: dict[str, paired.PairedSummary | str] = {}
    queried = [(a, b) for a, b in pairs if a.run_id != b.run_id]
    found.update({a.benchmark: "the same run" for a, b in pairs if a.run_id == b.run_id})
    if not queried:
        return found
    sides = [(side, result) for a, b in queried for side, result in (("a", a), ("b", b))]
    params = [[side for side, _ in sides], [r.run_id for _, r in sides], [r.benchmark for _, r in sides],
              [r.setup_key for _, r in sides]]
    with connection.cursor() as cursor:
        cursor.execute(PAIRED_SQL, params)
        sums = {row[0]: row[1:] for row in cursor.fetchall()}
    for a, b in queried:
        found[a.benchmark] = _summary(a, b, sums.get(a.benchmark, (0,) * 12))
    return found


def _summary(a: BenchmarkResult, b: BenchmarkResult, sums: tuple) -> paired.PairedSummary | str:
    n_a, distinct_a, n_b, distinct_b, blank_ids, shared, both, a_only, b_only, partial, sum_d, sum_d2 = sums
    if n_a != a.n or n_b != b.n:
        return "per-item records incomplete"
    if distinct_a != n_a or distinct_b != n_b or blank_ids:
        return "per-item records lack distinct item ids"
    if not shared or shared != n_a or shared != n_b:
        return "different items"
    return paired.PairedSummary(shared, both, a_only, b_only, float(sum_d), float(sum_d2), binary=partial == 0)


def paired_rows(column_a: ModelColumn, column_b: ModelColumn, benchmarks: list[str]) -> dict[str, PairedRow]:
    """A − B per benchmark, or why not (one query for every benchmark that can be paired)."""
    names = (column_a.repo_id, column_b.repo_id)
    rows: dict[str, PairedRow] = {}
    candidates = []
    for benchmark in benchmarks:
        a, b = column_a.results.get(benchmark), column_b.results.get(benchmark)
        if a is None or b is None:
            rows[benchmark] = PairedRow(*names, None, "measured on one model only")
        elif a.private or b.private:
            rows[benchmark] = PairedRow(*names, None, "held-out set: per-item records are not compared")
        elif reason := comparable_reason(a, b):
            rows[benchmark] = PairedRow(*names, None, reason)
        else:
            candidates.append((a, b))
    for benchmark, summary in paired_summaries(candidates).items():
        rows[benchmark] = (PairedRow(*names, None, summary) if isinstance(summary, str)
                           else PairedRow(*names, paired.difference_from_summary(summary)))
    return rows


def compare_models(repo_ids: list[str]) -> Comparison:
    """The comparison page's data; every model is paired with the first one named."""
    columns = model_columns(repo_ids)
    benchmarks = sorted({slug for column in columns for slug in column.results})
    pairs = [paired_rows(columns[0], other, benchmarks) for other in columns[1:]]
    rows = []
    for slug in benchmarks:
        cells = [
            Cell(column.results.get(slug), column.claims.get(slug), column.base.get(slug)) for column in columns
        ]
        rows.append(BenchmarkRow(slug, cells, [by_benchmark[slug] for by_benchmark in pairs]))
    return Comparison(columns, rows)
