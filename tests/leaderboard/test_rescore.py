"""Re-scoring stored outputs after a deliberate extractor change: the expected items flip, the
old result is kept beside the new one, the log says what changed, the claim is judged again and
its flag follows (resolved when the mismatch no longer holds, raised when one appears), and the
board and the model page show the new result."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from leaderboard.models import (
    BenchmarkResult,
    EvaluationRun,
    Flag,
    FlagEvent,
    LeaderboardEntry,
    ModelSubmission,
    RescoreLog,
    SampleResult,
)
from leaderboard.services import rescore
from tests.browser.site_data import publish
from tests.fixtures_rescoring import LenientGSM8K, gold_numbers, outputs_for, stored_records
from verification.benchmarks import registry
from verification.benchmarks.gsm8k import GSM8KSpec
from verification.compare import judge_claim
from verification.config import default_datasets_dir
from verification.report import missing_checks, status_for
from leaderboard.services.flags import do_raise_flag
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry
from workers.storage import measurement_from_row

pytestmark = pytest.mark.django_db

DATASETS = str(default_datasets_dir())
PLAN = "HAAWwxHA" * 5  # v1: 10/40 right; lenient: 25/40 (15 'A' items flip to right)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def sample_rows(spec=None) -> list[dict]:
    records = stored_records(outputs_for(gold_numbers(DATASETS, len(PLAN)), PLAN), DATASETS, spec)
    keys = ("item_id", "prompt", "output", "extracted", "gold", "correct", "score", "error", "unparsed", "details")
    return [{key: getattr(record, key) for key in keys} for record in records]


def pipeline_report(verdict: str, *, check_failed: bool = False) -> dict:
    """The stored report's parts the status reads: the check log (every check that applied ran;
    with `check_failed`, contamination applied and crashed) and the benchmark's verdict."""
    checks = [{"check": "endpoint", "applies": False, "status": "ok"}]
    if check_failed:
        checks.append({"check": "contamination", "applies": True, "status": "error", "reason": "the probe crashed"})
    report = {"benchmarks": {"gsm8k": {"verdict": verdict}}, "flags": [], "run": {"checks": checks}}
    report["missing_checks"] = missing_checks(report)
    return report


def published(repo_id: str, claim: float, verdict: str, spec=None, version: str = "1", *,
              check_failed: bool = False):
    rows = sample_rows(spec)
    correct = sum(row["correct"] for row in rows)
    submission = publish(repo_id, {"gsm8k": (correct, len(rows))}, claims={"gsm8k": claim},
                         verdicts={"gsm8k": verdict}, samples={"gsm8k": rows})
    result = BenchmarkResult.objects.get(run__submission=submission, benchmark="gsm8k")
    BenchmarkResult.objects.filter(pk=result.pk).update(benchmark_version=version)
    result.refresh_from_db()
    report = pipeline_report(verdict, check_failed=check_failed)
    ModelSubmission.objects.filter(pk=submission.pk).update(report=report, status=status_for(report))
    submission.refresh_from_db()
    return submission, result


def raise_as_the_pipeline_does(submission, result) -> Flag | None:
    """The judge's flag raised and the status set from the report, as the pipeline publishes."""
    judgement = judge_claim(result.claimed, measurement_from_row(result))
    if judgement.flag is None:
        return None
    report = {**submission.report, "flags": [judgement.flag]}
    ModelSubmission.objects.filter(pk=submission.pk).update(report=report, status=status_for(report))
    submission.refresh_from_db()
    return do_raise_flag(submission, result.run, judgement.flag)


def test_extractor_change_flips_items_keeps_old_result_and_resolves_the_flag(client):
    submission, old = published("acme/lenient", 62.0, "inconsistent")
    flag = raise_as_the_pipeline_does(submission, old)
    assert flag is not None and flag.kind == "score_mismatch"
    do_refresh_leaderboard_entry(submission)  # as the pipeline does on publishing
    assert LeaderboardEntry.objects.get(repo_id="acme/lenient").badge == "flagged"

    items = rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS)
    assert len(items) == 1 and items[0].outcome.became_correct == 15 and items[0].outcome.became_wrong == 0
    # Old result kept, new one beside it with the new version, judged again.
    results = {r.benchmark_version: r for r in BenchmarkResult.objects.filter(run=old.run, benchmark="gsm8k")}
    assert set(results) == {"1", "2-lenient"}
    assert results["1"].measured == pytest.approx(25.0) and results["1"].verdict == "inconsistent"
    new = results["2-lenient"]
    assert new.measured == pytest.approx(62.5) and new.verdict == "consistent" and new.claimed == 62.0
    assert new.ci_low < 62.5 < new.ci_high and new.n_unparsed == 5 and new.metrics["rescored_from"] == "1"
    # The log.
    log = RescoreLog.objects.get()
    assert (log.old_version, log.new_version, log.became_correct, log.became_wrong) == ("1", "2-lenient", 15, 0)
    assert (log.unparsed_before, log.unparsed_after, log.verdict_before, log.verdict_after) == (
        25, 5, "inconsistent", "consistent")
    assert sorted(f["index"] for f in log.flipped) == [i for i, c in enumerate(PLAN) if c == "A"]
    # Per-item rows now carry the new scoring and remember the old one.
    assert SampleResult.objects.filter(run=old.run, correct=True).count() == 25
    flipped = SampleResult.objects.get(run=old.run, index=1)
    assert flipped.correct and flipped.details["rescored_from"] == {
        "version": "1", "correct": False, "score": 0.0, "extracted": None, "unparsed": True}
    # The mismatch no longer holds: resolved with the reason, in triage's vocabulary.
    flag.refresh_from_db()
    assert flag.status == Flag.Status.RESOLVED and "no longer holds" in flag.decision_reason
    assert flag.events.filter(action=FlagEvent.Action.RESOLVED, actor=None).count() == 1
    # Board and model page show the new result.
    entry = LeaderboardEntry.objects.get(repo_id="acme/lenient")
    assert entry.scores["gsm8k"] == pytest.approx(62.5) and entry.badge == "verified"
    html = client.get("/models/acme/lenient/").content.decode()
    assert 'id="rescoring-log"' in html and "v1 → v2-lenient" in html
    assert '<td class="num rescore-became-correct">15</td>' in html
    board = client.get("/").content.decode()
    assert "62.5" in board


def test_rescoring_is_idempotent_and_dry_run_writes_nothing():
    published("acme/twice", 62.0, "inconsistent")
    dry = rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS, dry_run=True)
    assert dry[0].outcome.became_correct == 15 and dry[0].verdict_after == "consistent"
    assert BenchmarkResult.objects.count() == 1 and not RescoreLog.objects.exists()
    assert SampleResult.objects.filter(correct=True).count() == 10
    rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS)
    assert rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS) == []
    assert BenchmarkResult.objects.count() == 2 and RescoreLog.objects.count() == 1


def test_a_second_rescoring_racing_the_first_leaves_its_result_alone():
    from pathlib import Path

    published("acme/race", 62.0, "inconsistent")
    spec = LenientGSM8K()
    seen_by_the_second = list(rescore.results_to_rescore(spec))  # read before the first one wrote
    rescore.do_rescore_benchmark("gsm8k", spec=spec, datasets_dir=DATASETS)
    late = rescore._rescore_one(spec, seen_by_the_second[0], Path(DATASETS), dry_run=False)
    assert late.outcome is None and late.skipped == "already re-scored with v2-lenient"
    assert BenchmarkResult.objects.count() == 2 and RescoreLog.objects.count() == 1


def test_a_stricter_extractor_raises_the_flag_through_the_one_writer():
    # Stored under the lenient extractor, where the 62 claim was consistent; strict scoring
    # makes it inconsistent: the judge raises score_mismatch and the flag writer records it.
    submission, _ = published("acme/strict", 62.0, "consistent", spec=LenientGSM8K(), version="2-lenient")
    assert not submission.flags.exists()
    items = rescore.do_rescore_benchmark("gsm8k", spec=GSM8KSpec(version="3-strict"), datasets_dir=DATASETS)
    assert items[0].outcome.became_wrong == 15 and items[0].verdict_after == "inconsistent"
    flag = submission.flags.get()
    assert flag.kind == "score_mismatch" and flag.status == Flag.Status.OPEN
    assert LeaderboardEntry.objects.get(repo_id="acme/strict").badge == "flagged"
    assert RescoreLog.objects.get().flag_actions[0]["kind"] == "score_mismatch"


def test_a_version_bump_that_changes_no_score_flips_nothing_and_the_flag_stands():
    # An honest case: the version moved for a change that scores every stored output the same.
    submission, old = published("acme/plain", 62.0, "inconsistent")
    flag = raise_as_the_pipeline_does(submission, old)
    items = rescore.do_rescore_benchmark("gsm8k", spec=GSM8KSpec(version="1.1"), datasets_dir=DATASETS)
    assert items[0].outcome.flips == [] and items[0].verdict_after == "inconsistent"
    assert items[0].outcome.outcome.measured == pytest.approx(old.measured)
    flag.refresh_from_db()
    assert flag.status == Flag.Status.OPEN and submission.flags.count() == 1
    assert flag.events.filter(action=FlagEvent.Action.NOTE, message__startswith="seen again").exists()
    assert not SampleResult.objects.filter(details__has_key="rescored_from").exists()


def test_outputs_of_another_prompt_are_not_rescored():
    submission, old = published("acme/tampered", 62.0, "inconsistent")
    SampleResult.objects.filter(run=old.run, index=3).update(prompt="Question: a different prompt\nAnswer:")
    items = rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS)
    assert items[0].outcome is None and "prompt of item 3 changed" in items[0].skipped
    assert BenchmarkResult.objects.count() == 1 and not RescoreLog.objects.exists()


def test_incomplete_samples_are_skipped():
    _, old = published("acme/partial-samples", 62.0, "inconsistent")
    SampleResult.objects.filter(run=old.run, index=0).delete()
    items = rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS)
    assert items[0].skipped == "39 stored samples for 40 items"


@pytest.fixture
def lenient_registered():
    original = registry.get("gsm8k")
    registry.register(LenientGSM8K(), replace=True)
    yield
    registry.register(original, replace=True)


def test_rescore_command(lenient_registered, settings):
    settings.DATASETS_DIR = DATASETS
    published("acme/command", 62.0, "inconsistent")
    out = io.StringIO()
    call_command("rescore", "--benchmark", "gsm8k", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "dry run" in text and "15 item(s) now right, 0 now wrong" in text and "15 item(s) flipped" in text
    assert not RescoreLog.objects.exists()
    call_command("rescore", "--benchmark", "gsm8k", stdout=io.StringIO())
    assert RescoreLog.objects.count() == 1
    with pytest.raises(CommandError, match="Unknown benchmark"):
        call_command("rescore", "--benchmark", "no_such_bench", stdout=io.StringIO())


def test_a_maintainers_recomparison_after_rescoring_judges_the_new_result():
    from leaderboard.services import triage
    from tests.leaderboard.test_triage_fixtures import make_user

    submission, old = published("acme/recompared", 62.0, "inconsistent")
    # The run's plan as the pipeline records it (triage reads the planned benchmarks).
    EvaluationRun.objects.filter(pk=old.run_id).update(
        benchmarks=[{"slug": "gsm8k", "version": "1", "setup": dict(old.setup)}])
    flag = raise_as_the_pipeline_does(submission, old)
    rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS)
    maintainer = make_user("mara", maintainer=True)
    outcome = triage.do_correct_claim_setup(flag, maintainer, shots=0, cot=None, chat_template=None,
                                            reason="The card says 0-shot.")
    assert outcome.result.benchmark_version == "2-lenient" and outcome.verdict == "consistent"


def test_the_admin_lists_rescore_logs_read_only(admin_client):
    published("acme/admin-log", 62.0, "inconsistent")
    rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS)
    log = RescoreLog.objects.get()
    listing = admin_client.get("/admin/leaderboard/rescorelog/").content.decode()
    assert "2-lenient" in listing and "gsm8k" in listing
    assert admin_client.get(f"/admin/leaderboard/rescorelog/{log.pk}/change/").status_code == 200  # view only
    assert admin_client.get("/admin/leaderboard/rescorelog/add/").status_code == 403
    change = admin_client.post(f"/admin/leaderboard/rescorelog/{log.pk}/change/", {"became_correct": 0})
    assert change.status_code == 403
    assert admin_client.post(f"/admin/leaderboard/rescorelog/{log.pk}/delete/", {"post": "yes"}).status_code == 403
    log.refresh_from_db()
    assert log.became_correct == 15
