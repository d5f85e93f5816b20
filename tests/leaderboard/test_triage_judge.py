"""Triage's re-comparison ("correct the claim's setup") and the pipeline's comparison judge a
claim by one rule: on the same stored rows they give the same verdict, the same z and the same
flags (clustered SE from the run, Bonferroni over the claims that get a verdict, invalid runs
judged by nothing, a discrepant claim not flagged)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from leaderboard.models import BenchmarkResult, Claim, Flag
from leaderboard.services import triage as svc
from tests.leaderboard.test_triage_fixtures import make_flag, make_run, make_submission, people  # noqa: F401
from verification.compare import compare
from verification.pipeline import PlannedBenchmark
from verification.stats import wilson_interval
from workers.storage import claims_doc, measurements_of, run_plan

pytestmark = pytest.mark.django_db

SETUP = {"shots": 5, "cot": False, "chat_template": False}


@dataclass(frozen=True)
class Row:
    slug: str
    correct: int
    n: int
    claimed: float | None = None
    n_errors: int = 0
    se: float | None = None  # the run's (clustered) SE, as a fraction; None: not stored


@dataclass(frozen=True)
class Case:
    rows: tuple[Row, ...]
    verdict: str  # gsm8k's verdict under the pipeline's rule


CASES = {
    "consistent": Case((Row("gsm8k", 139, 200, 70.0),), "consistent"),
    "discrepant_is_not_flagged": Case((Row("gsm8k", 120, 200, 72.0, se=0.0346),), "discrepant"),
    "inconsistent": Case((Row("gsm8k", 80, 200, 70.0),), "inconsistent"),
    "claimed_below": Case((Row("gsm8k", 150, 200, 60.0),), "claimed_below"),
    "invalid_run": Case((Row("gsm8k", 80, 200, 70.0, n_errors=5),), "invalid"),
    # Items share passages: the run's clustered SE is twice the binomial one, and with it a
    # 15-point gap is within the noise (the binomial SE alone would call it inconsistent).
    "clustered_se": Case((Row("gsm8k", 120, 200, 75.0, se=0.06),), "consistent"),
    # mmlu's run is invalid, so one claim gets a verdict (k = 1, threshold 2): z = 2.1 is
    # discrepant. Counting every claim (k = 2, threshold 2.28) would call it consistent.
    "bonferroni_counts_claims_with_a_verdict": Case(
        (Row("gsm8k", 120, 200, 70.3, se=0.0346), Row("mmlu", 100, 200, 60.0, n_errors=10)), "discrepant"
    ),
}


def _store(people) -> callable:
    submission = make_submission("alice-lab/math-7b", people["author"])
    run = make_run(submission)

    def build(case: Case):
        plan = [PlannedBenchmark(row.slug, "1", SETUP) for row in case.rows]
        run.benchmarks = [p.as_dict() for p in plan]
        run.save(update_fields=["benchmarks"])
        for row, planned in zip(case.rows, plan):
            if row.claimed is not None:
                Claim.objects.create(submission=submission, benchmark=row.slug, score=row.claimed, **SETUP)
            low, high = wilson_interval(row.correct, row.n)
            BenchmarkResult.objects.create(
                run=run, benchmark=row.slug, benchmark_version="1", setup=SETUP, setup_key=planned.setup_key,
                measured=100.0 * row.correct / row.n, ci_low=100.0 * low, ci_high=100.0 * high, n=row.n,
                n_errors=row.n_errors, metrics={} if row.se is None else {"se": row.se},
            )
        return submission, run

    return build


@pytest.mark.parametrize("name", list(CASES))
def test_triage_recomparison_agrees_with_the_pipeline(people, name):  # noqa: F811
    case = CASES[name]
    submission, run = _store(people)(case)
    section, report_flags = compare(measurements_of(run, run_plan(run)), claims_doc(submission))
    flag = make_flag(submission, run=run)  # a score_mismatch flag on gsm8k, open

    outcome = svc.do_correct_claim_setup(flag.pk, people["maintainer"], reason="same setup, judged again", **SETUP)

    entry = section["gsm8k"]
    assert entry["verdict"] == case.verdict
    assert (outcome.verdict, outcome.z) == (entry["verdict"], entry["z"])
    stored = BenchmarkResult.objects.get(run=run, benchmark="gsm8k")
    assert (stored.claimed, stored.z, stored.verdict) == (entry["claimed"], entry["z"], entry["verdict"])
    # The flags standing on gsm8k afterwards are the ones the pipeline raises there.
    raised = {f["kind"] for f in report_flags if f["benchmark"] == "gsm8k"}
    standing = set(
        Flag.objects.filter(submission=submission, benchmark="gsm8k", status=Flag.Status.OPEN)
        .values_list("kind", flat=True)
    )
    assert standing == raised
    flag.refresh_from_db()
    assert flag.status == (Flag.Status.OPEN if "score_mismatch" in raised else Flag.Status.RESOLVED)
