"""A claimed base is measured once across submissions, on the real PostgreSQL: two workers planning
two submissions on the same base at the same moment create one base run between them (the base's
advisory lock), and two submissions whose base run is still in flight share it and report the same
base measurement."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from django.db import connection, transaction

from leaderboard.models import Claim, EvaluationRun, ModelSubmission, SampleResult
from verification import pipeline
from verification.claims import ClaimsDoc, ClaimSpec
from workers import steps, storage

pytestmark = pytest.mark.django_db(transaction=True)

Status = ModelSubmission.Status
RunStatus = EvaluationRun.Status
LIMIT = 4
ROUNDS = 4


@pytest.fixture
def preparation(tiny_base, tiny_other_base) -> pipeline.Preparation:
    """Intake of tiny-base claiming tiny-other-base, planned once (no worker involved)."""
    claims = ClaimsDoc(claims=(ClaimSpec("arc_challenge", 40.0),), base_model=tiny_other_base.repo_id)
    prep = pipeline.prepare(tiny_base.repo_id, tiny_base.sha, claims, base=tiny_other_base.repo_id, core=())
    assert prep.base is not None and prep.base.sha == tiny_other_base.sha
    return prep


def _claimed_submission(repo_id: str, base: str) -> ModelSubmission:
    """A submission as its intake worker holds it: RUNNING, attempt 1, no runs yet."""
    return ModelSubmission.objects.create(
        repo_id=repo_id, requested_revision="main", claimed_base=base, status=Status.RUNNING, attempts=1
    )


def _slow_in_flight_check(monkeypatch, pause_s: float = 0.4) -> None:
    """Widen the window between "no base run is in flight" and creating one, so two intakes that
    are not serialised both fall into it every time (the race, made certain)."""
    check = storage.in_flight_base_run

    def slow(*args, **kwargs):
        found = check(*args, **kwargs)
        time.sleep(pause_s)
        return found

    monkeypatch.setattr(storage, "in_flight_base_run", slow)


def _race(prep: pipeline.Preparation, submissions: list[ModelSubmission]) -> list[list[int]]:
    """Each submission's run creation on its own thread (its own database session), released
    together by a barrier."""
    barrier = threading.Barrier(len(submissions))
    created: list[list[int]] = [[] for _ in submissions]
    errors: list[BaseException] = []

    def intake(i: int, claimed: ModelSubmission) -> None:
        try:
            barrier.wait(timeout=30)
            created[i] = steps._create_runs(claimed, 1, prep, LIMIT, lambda run_id: None)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=intake, args=(i, s)) for i, s in enumerate(submissions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return created


def _base_runs(repo: str, sha: str) -> list[EvaluationRun]:
    return list(EvaluationRun.objects.filter(role=EvaluationRun.Role.BASE, model_repo=repo, model_sha=sha))


def test_two_intakes_racing_on_one_base_create_exactly_one_base_run(preparation, tiny_base, monkeypatch):
    _slow_in_flight_check(monkeypatch)
    for round_ in range(ROUNDS):
        # A base sha of its own per round: each round races on a base nobody measured yet.
        base = replace(preparation.base, sha=f"{round_ + 1:040x}")
        prep = replace(preparation, base=base)
        submissions = [_claimed_submission(tiny_base.repo_id, base.repo_id) for _ in range(3)]
        created = _race(prep, submissions)
        base_runs = _base_runs(base.repo_id, base.sha)
        assert len(base_runs) == 1, f"round {round_}: {len(base_runs)} base runs"
        # every submission got its own run; the base run went to exactly one of them
        assert sorted(len(ids) for ids in created) == [1, 1, 2]
        assert base_runs[0].id in {run_id for ids in created for run_id in ids}
        assert base_runs[0].benchmarks == [p.as_dict() for p in prep.plan]


def test_without_the_lock_the_same_race_measures_the_base_twice(preparation, tiny_base, monkeypatch):
    """The control: the race above is real, and it is the lock that wins it."""
    _slow_in_flight_check(monkeypatch)
    monkeypatch.setattr(storage, "lock_base_model", lambda repo, sha: None)
    base = replace(preparation.base, sha="e" * 40)
    prep = replace(preparation, base=base)
    _race(prep, [_claimed_submission(tiny_base.repo_id, base.repo_id) for _ in range(2)])
    assert len(_base_runs(base.repo_id, base.sha)) == 2


def test_the_lock_is_held_until_the_transaction_ends_and_is_keyed_by_repo_and_sha():
    assert storage.base_lock_key("org/base", "a" * 40) == storage.base_lock_key("org/base", "a" * 40)
    assert storage.base_lock_key("org/base", "a" * 40) != storage.base_lock_key("org/base", "b" * 40)
    assert storage.base_lock_key("org/base", "a" * 40) != storage.base_lock_key("org/other", "a" * 40)
    with pytest.raises(RuntimeError, match="needs a transaction"):
        storage.lock_base_model("org/base", "a" * 40)

    held, released = threading.Event(), threading.Event()
    waited: list[float] = []

    def holder() -> None:
        try:
            with transaction.atomic():
                storage.lock_base_model("org/base", "a" * 40)
                held.set()
                released.wait(timeout=30)
        finally:
            connection.close()

    def other_sha_then_same() -> None:
        try:
            held.wait(timeout=30)
            with transaction.atomic():  # another sha: not blocked
                storage.lock_base_model("org/base", "b" * 40)
            started = time.monotonic()
            with transaction.atomic():  # the same (repo, sha): waits for the holder's commit
                storage.lock_base_model("org/base", "a" * 40)
                waited.append(time.monotonic() - started)
        finally:
            connection.close()

    threads = [threading.Thread(target=holder), threading.Thread(target=other_sha_then_same)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    assert not waited  # still blocked by the holder
    released.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(waited) == 1 and waited[0] >= 0.5


def test_two_submissions_on_one_base_in_flight_share_one_base_measurement(
    tiny_base, tiny_other_base, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.CHECKS = ()
    settings.CORE_BENCHMARKS = ()
    settings.INFERENCE_BACKEND = "transformers"
    settings.DEFAULT_EVAL_LIMIT = LIMIT
    settings.MODEL_CACHE_DIR = tmp_path / "model_cache"
    submissions = []
    for score in (40.0, 41.0):
        submission = ModelSubmission.objects.create(
            repo_id=tiny_base.repo_id, requested_revision="main", claimed_base=tiny_other_base.repo_id
        )
        Claim.objects.create(submission=submission, benchmark="arc_challenge", score=score)
        submissions.append(submission)
    # Both intakes before anything is measured: the second finds the first's base run in flight.
    with django_capture_on_commit_callbacks(execute=False):
        first_runs = steps.start_verification(submissions[0].id, enqueue=lambda _id: None)
        second_runs = steps.start_verification(submissions[1].id, enqueue=lambda _id: None)
    assert len(first_runs) == 2 and len(second_runs) == 1
    [base_run] = _base_runs(tiny_other_base.repo_id, tiny_other_base.sha)
    assert base_run.id in first_runs

    for run_id in second_runs + [r for r in first_runs if r != base_run.id]:
        assert steps.execute_run(run_id) == RunStatus.DONE
    # the second submission's own run is done, but its base is still being measured: it waits
    assert steps.finalize(submissions[1].id) == "waiting"
    assert steps.execute_run(base_run.id) == RunStatus.DONE
    for submission in submissions:
        assert steps.finalize(submission.id) in (Status.VERIFIED, Status.FLAGGED, Status.INCOMPLETE)

    assert len(_base_runs(tiny_other_base.repo_id, tiny_other_base.sha)) == 1
    assert SampleResult.objects.filter(run=base_run, benchmark="arc_challenge").count() == LIMIT
    reports = [ModelSubmission.objects.get(id=s.id).report for s in submissions]
    assert reports[0]["base"]["arc_challenge"]["measured"] == reports[1]["base"]["arc_challenge"]["measured"]
    assert reports[1]["run"]["base_runs"] == []  # measured by the first submission's base run, not its own
