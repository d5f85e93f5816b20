"""Models side by side: claimed, measured (with intervals), base, flags and status per benchmark,
and, for two models measured on the same items, the paired difference with its interval.

The statistics are the engine's (verification.paired); this module only chooses what is paired.
Two results are paired only when they are the same test: same benchmark, same version, same
setup, same dataset content and the same item ids, both complete and both valid measurements.
Anything else reads "not comparable" with the reason, never a number.

Queries are bounded: a fixed handful per model, and per benchmark and pair one aggregate query
that joins the two runs' per-item rows on item id and returns only counts and sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.http import Http404

from leaderboard import selectors
from leaderboard.models import BenchmarkResult, EvaluationRun, Flag, LeaderboardEntry, ModelSubmission, SampleResult
from leaderboard.services.leaderboard import badge_for, headline_results, latest_finished_run
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
    run: EvaluationRun | None
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


def _public_flags(submission: ModelSubmission) -> list[dict[str, Any]]:
    """One line per flag the public sees (triage's rule: dismissed info flags are not shown)."""
    flags = submission.flags.exclude(status=Flag.Status.DISMISSED, severity=Flag.Severity.INFO)
    rows = flags.order_by("created_at", "id").values("id", "kind", "severity", "benchmark", "summary", "status")
    return [{**row, "label": PUBLIC_LABELS.get(row["status"], row["status"])} for row in rows]


def model_column(repo_id: str) -> ModelColumn:
    try:
        submission = selectors.model_submission(repo_id)
    except Http404:
        raise CompareError(f"No model {repo_id!r} on Verity.", status=404) from None
    run = latest_finished_run(submission)
    return ModelColumn(
        repo_id=repo_id,
        submission=submission,
        entry=selectors.entry_of(submission),
        run=run,
        status=badge_for(submission),
        results=headline_results(run) if run else {},
        claims={c.benchmark: c.score for c in submission.claims.all()},
        base=selectors.base_measurements(submission),
        flags=_public_flags(submission),
    )


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


# One aggregate over the two runs' per-item rows, grouped by item id: only sums leave the
# database. One scan and a group-by, so the cost does not depend on the planner's statistics (a
# join on item id became a nested loop on fresh tables: seconds per benchmark). Scores are 0..1
# (a DB constraint); errored and unparsed items are stored with 0.
PAIRED_SQL = f"""
SELECT COALESCE(SUM(na), 0), COUNT(*) FILTER (WHERE na > 0),
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
    SELECT item_id,
           COUNT(*) FILTER (WHERE run_id = %s) AS na, COUNT(*) FILTER (WHERE run_id = %s) AS nb,
           MAX(score) FILTER (WHERE run_id = %s) AS sa, MAX(score) FILTER (WHERE run_id = %s) AS sb
    FROM {SampleResult._meta.db_table}
    WHERE run_id IN (%s, %s) AND benchmark = %s AND setup_key = %s
    GROUP BY item_id
) AS per_item
"""


def paired_summary(a: BenchmarkResult, b: BenchmarkResult) -> paired.PairedSummary | str:
    """The two runs' per-item records summed over the items they share (one query), or why they
    cannot be paired: records missing, item ids not distinct, or not the same items."""
    if a.run_id == b.run_id:
        return "the same run"
    with connection.cursor() as cursor:
        cursor.execute(PAIRED_SQL, [a.run_id, b.run_id, a.run_id, b.run_id, a.run_id, b.run_id,
                                    a.benchmark, a.setup_key])
        (n_a, distinct_a, n_b, distinct_b, blank_ids, shared, both, a_only, b_only, partial,
         sum_d, sum_d2) = cursor.fetchone()
    if n_a != a.n or n_b != b.n:
        return "per-item records incomplete"
    if distinct_a != n_a or distinct_b != n_b or blank_ids:
        return "per-item records lack distinct item ids"
    if not shared or shared != n_a or shared != n_b:
        return "different items"
    return paired.PairedSummary(shared, both, a_only, b_only, float(sum_d), float(sum_d2), binary=partial == 0)


def paired_row(column_a: ModelColumn, column_b: ModelColumn, benchmark: str) -> PairedRow:
    a, b = column_a.results.get(benchmark), column_b.results.get(benchmark)
    names = (column_a.repo_id, column_b.repo_id)
    if a is None or b is None:
        return PairedRow(*names, None, "measured on one model only")
    if a.private or b.private:
        return PairedRow(*names, None, "held-out set: per-item records are not compared")
    reason = comparable_reason(a, b)
    if reason:
        return PairedRow(*names, None, reason)
    summary = paired_summary(a, b)
    if isinstance(summary, str):
        return PairedRow(*names, None, summary)
    return PairedRow(*names, paired.difference_from_summary(summary))


def compare_models(repo_ids: list[str]) -> Comparison:
    """The comparison page's data; every model is paired with the first one named."""
    columns = [model_column(repo_id) for repo_id in repo_ids]
    benchmarks = sorted({slug for column in columns for slug in column.results})
    rows = []
    for slug in benchmarks:
        cells = [
            Cell(column.results.get(slug), column.claims.get(slug), column.base.get(slug)) for column in columns
        ]
        row = BenchmarkRow(slug, cells)
        row.pairs = [paired_row(columns[0], other, slug) for other in columns[1:]]
        rows.append(row)
    return Comparison(columns, rows)
