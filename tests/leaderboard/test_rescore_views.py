"""After a re-scoring, every reader shows the result that stands and marks the one it replaced:
the model page folds the superseded result under the current one, the sample explorer and the
flag page read the current one (and say what a flipped item was), the Hub export carries only
the current one, and the submission's status, badge, board row and API agree once a flag is
decided (by a re-scoring or by a maintainer)."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.cache import cache
from django.test import Client

from leaderboard import selectors
from leaderboard.models import BenchmarkResult, EvaluationRun, Flag, LeaderboardEntry, ModelSubmission
from leaderboard.services import rescore, triage
from leaderboard.services.eval_results import exportable_results
from leaderboard.services.flags import do_raise_flag
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry, status_now
from tests.fixtures_rescoring import LenientGSM8K
from tests.leaderboard.test_rescore import DATASETS, PLAN, published, raise_as_the_pipeline_does
from tests.leaderboard.test_triage_fixtures import make_user
from verification.benchmarks.gsm8k import GSM8KSpec

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def rescored(repo_id: str, *, check_failed: bool = False):
    """A model whose 62 claim was flagged under v1 (measured 25), re-scored with the lenient
    extractor (62.5, consistent: the flag is resolved)."""
    submission, old = published(repo_id, 62.0, "inconsistent", check_failed=check_failed)
    flag = raise_as_the_pipeline_does(submission, old)
    do_refresh_leaderboard_entry(submission)
    rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS)
    cache.clear()
    submission.refresh_from_db()
    flag.refresh_from_db()
    return submission, old, flag


def rows_of(html: str, table_id: str) -> list[str]:
    table = re.search(rf'<table id="{table_id}".*?</table>', html, re.S)
    assert table is not None, table_id
    return re.findall(r"<tr\b.*?</tr>", table.group(0), re.S)[1:]  # without the header row


# --- the model page and the API -----------------------------------------------------------------


def test_result_rows_fold_the_superseded_result_under_the_current_one():
    submission, old, _ = rescored("acme/folded")
    rows = selectors.result_rows(old.run)
    assert [(r.benchmark, r.benchmark_version, r.measured) for r in rows] == [("gsm8k", "2-lenient", 62.5)]
    (earlier,) = rows[0].superseded
    assert (earlier.benchmark_version, earlier.superseded_by, earlier.measured, earlier.verdict) == (
        "1", "2-lenient", 25.0, "inconsistent")
    assert rows[0].superseded_by == "" and earlier.superseded == ()


def test_a_second_rescoring_folds_both_earlier_results_newest_first():
    _, old, _ = rescored("acme/twice-rescored")
    rescore.do_rescore_benchmark("gsm8k", spec=GSM8KSpec(version="3-strict"), datasets_dir=DATASETS)
    (row,) = selectors.result_rows(old.run)
    assert row.benchmark_version == "3-strict" and row.measured == pytest.approx(25.0)
    assert [(r.benchmark_version, r.superseded_by) for r in row.superseded] == [
        ("2-lenient", "3-strict"), ("1", "2-lenient")]


def test_results_under_two_setups_are_not_taken_for_a_rescoring():
    # An honest case: the same benchmark measured under the claimed setup and another one; both stand.
    submission, old = published("acme/two-setups", 62.0, "inconsistent")
    BenchmarkResult.objects.create(
        run=old.run, benchmark="gsm8k", benchmark_version="1", setup={"shots": 5}, setup_key="shots=5",
        measured=30.0, ci_low=20.0, ci_high=40.0, n=40, verdict="unclaimed")
    rows = selectors.result_rows(old.run)
    assert sorted(r.measured for r in rows) == [25.0, 30.0] and all(not r.superseded for r in rows)


def test_the_model_page_shows_one_current_row_and_marks_the_superseded_one(client):
    rescored("acme/page")
    html = client.get("/models/acme/page/").content.decode()
    summary = rows_of(html, "results-table")
    assert len(summary) == 1 and "62.5" in summary[0] and "re-scored v1 → v2-lenient" in summary[0]
    record = rows_of(html, "measurements-table")
    assert len(record) == 2
    assert 'class="superseded"' not in record[0] and "v2-lenient" in record[0]
    assert 'class="superseded"' in record[1] and "v1, superseded by rescoring v2-lenient" in record[1]
    assert "25.0" in record[1] and "inconsistent" in record[1]


def test_the_api_lists_the_current_result_with_the_superseded_one_under_it():
    rescored("acme/api")
    body = Client().get("/api/models/acme/api").json()
    (result,) = body["results"]
    assert (result["benchmark_version"], result["measured"], result["verdict"]) == ("2-lenient", 62.5, "consistent")
    assert [(s["benchmark_version"], s["superseded_by"], s["measured"]) for s in result["superseded"]] == [
        ("1", "2-lenient", 25.0)]


# --- the sample explorer and the flag page ---------------------------------------------------------


def test_the_sample_explorer_reads_the_current_result_and_says_what_a_flipped_item_was(client):
    submission, _, _ = rescored("acme/explorer")
    result, page = selectors.sample_page(submission, "gsm8k", "", 1)
    assert result.benchmark_version == "2-lenient" and result.measured == pytest.approx(62.5)
    html = client.get(f"/models/acme/explorer/samples?submission={submission.pk}&benchmark=gsm8k").content.decode()
    rows = re.findall(r'<tr class="sample-row">.*?</tr>', html, re.S)
    by_index = {int(re.search(r"<td>(\d+)</td>", row).group(1)): row for row in rows}
    assert PLAN[1] == "A" and "correct" in by_index[1]
    assert "was: wrong (unparsed), extracted <code>(none)</code>, under v1" in by_index[1]
    assert PLAN[0] == "H" and "rescored-was" not in by_index[0]  # scored the same: no note
    assert "rescored_from:" not in html  # shown as the note, not as raw details
    # "wrong" lists the current scoring's wrong items: 40 - 25 right.
    _, wrong = selectors.sample_page(submission, "gsm8k", "wrong", 1)
    assert wrong.paginator.count == 15


def test_the_flag_page_compares_against_the_current_result():
    submission, old, flag = rescored("acme/flag-page")
    comparison = triage.flag_comparison(flag)
    assert [(r.benchmark_version, r.measured) for r in comparison["results"]] == [("2-lenient", 62.5)]
    assert [(r.pk, version) for r, version in comparison["superseded"]] == [(old.pk, "2-lenient")]
    maintainer = make_user("mara", maintainer=True)
    client = Client()
    client.force_login(maintainer)
    html = client.get(f"/triage/flags/{flag.pk}/").content.decode()
    assert "superseded by rescoring v2-lenient" in html


# --- the Hub export --------------------------------------------------------------------------------


def test_the_export_carries_only_the_current_result():
    _, old, _ = rescored("acme/export")
    assert [(r.benchmark_version, r.measured) for r in exportable_results(old.run)] == [("2-lenient", 62.5)]
    entries = yaml.safe_load(Client().get("/api/models/acme/export/eval_results.yaml").content)
    gsm8k = [e for e in entries if e["dataset"]["id"] == "openai/gsm8k"]
    assert len(gsm8k) == 1 and gsm8k[0]["value"] == 62.5
    assert "benchmark version 2-lenient (stored outputs re-scored, first scored by v1)" in gsm8k[0]["notes"]


def test_an_invalid_current_result_does_not_bring_back_the_superseded_one():
    _, old, _ = rescored("acme/export-invalid")
    BenchmarkResult.objects.filter(run=old.run, benchmark_version="2-lenient").update(n_errors=40)
    assert exportable_results(old.run) == []


# --- status, badge, board and API agree ------------------------------------------------------------


def agreed_state(submission: ModelSubmission) -> str:
    submission.refresh_from_db()
    entry = LeaderboardEntry.objects.get(submission=submission)
    api = Client().get(f"/api/models/{submission.repo_id}").json()
    page = Client().get(f"/models/{submission.repo_id}/").content.decode()
    shown = re.search(r'id="model-badge">(\w+)<', page).group(1)
    assert submission.status == entry.badge == api["submission"]["status"] == api["entry"]["badge"] == shown
    return submission.status


def test_a_rescoring_that_resolves_the_only_flag_makes_the_submission_verified():
    submission, _, flag = rescored("acme/now-verified")
    assert flag.status == Flag.Status.RESOLVED
    assert agreed_state(submission) == "verified"


def test_a_resolved_flag_leaves_a_submission_with_a_missing_check_incomplete_never_verified():
    # The cheapest way to a "verified" badge: have the one flag resolved while a check crashed.
    submission, _, flag = rescored("acme/still-incomplete", check_failed=True)
    assert flag.status == Flag.Status.RESOLVED
    assert agreed_state(submission) == "incomplete"


def test_a_flag_that_still_stands_keeps_the_submission_flagged():
    submission, old = published("acme/two-flags", 62.0, "inconsistent")
    raise_as_the_pipeline_does(submission, old)
    do_raise_flag(submission, old.run, {"kind": "contamination", "severity": "warning", "benchmark": "gsm8k",
                                        "summary": "train-set overlap", "evidence": {}})
    rescore.do_rescore_benchmark("gsm8k", spec=LenientGSM8K(), datasets_dir=DATASETS)
    cache.clear()
    assert submission.flags.get(kind="score_mismatch").status == Flag.Status.RESOLVED
    assert agreed_state(submission) == "flagged"


def test_a_stricter_rescoring_flags_a_verified_submission():
    submission, _ = published("acme/strict-status", 62.0, "consistent", spec=LenientGSM8K(), version="2-lenient")
    do_refresh_leaderboard_entry(submission)
    assert agreed_state(submission) == "verified"
    rescore.do_rescore_benchmark("gsm8k", spec=GSM8KSpec(version="3-strict"), datasets_dir=DATASETS)
    cache.clear()
    assert agreed_state(submission) == "flagged"


def test_a_maintainers_resolution_recomputes_the_status_the_same_way():
    submission, old = published("acme/triaged", 62.0, "inconsistent")
    flag = raise_as_the_pipeline_does(submission, old)
    do_refresh_leaderboard_entry(submission)
    assert agreed_state(submission) == "flagged"
    maintainer = make_user("mara", maintainer=True)
    triage.do_resolve(flag, maintainer, "The card's number was a typo, since corrected.")
    cache.clear()
    assert agreed_state(submission) == "verified"
    triage.do_transition(flag, maintainer, Flag.Status.OPEN, "Reopened: the typo story does not hold.")
    cache.clear()
    assert agreed_state(submission) == "flagged"


def test_an_info_flag_does_not_flag_and_pipeline_statuses_are_left_alone():
    submission, old = published("acme/info-only", 25.0, "consistent")
    do_raise_flag(submission, old.run, {"kind": "contamination", "severity": "info", "benchmark": "gsm8k",
                                        "summary": "a note", "evidence": {}})
    assert status_now(submission) == "verified"
    ModelSubmission.objects.filter(pk=submission.pk).update(status=ModelSubmission.Status.RUNNING)
    submission.refresh_from_db()
    assert status_now(submission) == "running"


def test_a_flagged_submission_without_a_report_is_incomplete_once_its_flags_are_decided():
    # No stored report means no check log: deciding the flag cannot make it verified.
    submission, old = published("acme/no-report", 62.0, "inconsistent")
    ModelSubmission.objects.filter(pk=submission.pk).update(report=None)
    submission.refresh_from_db()
    flag = do_raise_flag(submission, old.run, {"kind": "score_mismatch", "severity": "warning", "benchmark": "gsm8k",
                                               "summary": "claimed 62, measured 25", "evidence": {}})
    do_refresh_leaderboard_entry(submission)
    assert agreed_state(submission) == "flagged"
    triage.do_dismiss(flag, make_user("mara", maintainer=True), "Checked by hand.")
    cache.clear()
    assert agreed_state(submission) == "incomplete"


def test_a_maintainers_recomparison_leaves_the_superseded_result_as_it_was():
    submission, old, flag = rescored("acme/recompared-record")
    EvaluationRun.objects.filter(pk=old.run_id).update(
        benchmarks=[{"slug": "gsm8k", "version": "1", "setup": dict(old.setup)}])
    flag.status = Flag.Status.OPEN  # reopened by hand: a maintainer re-compares under the card's setup
    flag.save(update_fields=["status"])
    outcome = triage.do_correct_claim_setup(flag, make_user("mara", maintainer=True), shots=0, cot=None,
                                            chat_template=None, reason="The card says 0-shot.")
    assert outcome.result.benchmark_version == "2-lenient" and outcome.verdict == "consistent"
    old.refresh_from_db()
    assert (old.claimed, old.verdict, old.measured) == (62.0, "inconsistent", 25.0)
