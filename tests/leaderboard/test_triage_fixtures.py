"""Shared fixtures and builders for the triage tests (no tests here; imported by
test_triage*.py and tests/browser/test_triage_browser.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.utils import timezone

from leaderboard.models import (
    BenchmarkResult,
    Claim,
    EvaluationRun,
    Flag,
    FlagEvent,
    ModelSubmission,
    SampleResult,
)
from leaderboard.services.triage import ensure_maintainers_group, flag_event_trigger_sql

SHA_A = "a" * 40
SHA_B = "b" * 40


def make_user(username: str, *, maintainer: bool = False) -> User:
    # No password: hashing one costs ~0.3 s per user and the tests log in with force_login.
    user = User.objects.create_user(username, email=f"{username}@example.org", password=None)
    if maintainer:
        user.groups.add(ensure_maintainers_group())
    return user


def make_submission(repo_id: str, submitter: User | None, sha: str = SHA_A,
                    status: str = ModelSubmission.Status.FLAGGED) -> ModelSubmission:
    return ModelSubmission.objects.create(repo_id=repo_id, pinned_sha=sha, submitter=submitter, status=status)


def make_run(submission: ModelSubmission, *, finished_minutes_ago: int = 5) -> EvaluationRun:
    now = timezone.now()
    return EvaluationRun.objects.create(
        submission=submission, model_repo=submission.repo_id, model_sha=submission.pinned_sha, backend="vllm",
        status=EvaluationRun.Status.DONE, started_at=now - timedelta(minutes=finished_minutes_ago + 10),
        finished_at=now - timedelta(minutes=finished_minutes_ago),
    )


def make_result(run: EvaluationRun, benchmark: str, *, correct: int, n: int, setup: dict[str, Any],
                claimed: float | None = None, verdict: str = BenchmarkResult.Verdict.UNCLAIMED,
                z: float | None = None, with_samples: bool = True) -> BenchmarkResult:
    """A stored measurement with a real Wilson interval and, optionally, its per-item samples."""
    from verification.stats import wilson_interval

    import json

    low, high = wilson_interval(correct, n)
    setup_key = json.dumps(setup, sort_keys=True)
    result = BenchmarkResult.objects.create(
        run=run, benchmark=benchmark, benchmark_version="1", setup=setup, setup_key=setup_key,
        measured=100.0 * correct / n, ci_low=100.0 * low, ci_high=100.0 * high, n=n,
        claimed=claimed, z=z, verdict=verdict,
    )
    if with_samples:
        SampleResult.objects.bulk_create(
            SampleResult(run=run, benchmark=benchmark, setup_key=setup_key, index=index, item_id=f"item-{index}",
                         prompt=f"Question {index}: what is {index} + {index}?",
                         output=f"The answer is {2 * index if index < correct else index}.",
                         extracted=str(2 * index if index < correct else index), gold=str(2 * index),
                         correct=index < correct, score=1.0 if index < correct else 0.0)
            for index in range(n)
        )
    return result


def make_flag(submission: ModelSubmission, *, kind: str = Flag.Kind.SCORE_MISMATCH,
              severity: str = Flag.Severity.CRITICAL, benchmark: str = "gsm8k",
              run: EvaluationRun | None = None, age: timedelta = timedelta(0),
              evidence: dict[str, Any] | None = None, summary: str = "Claimed 70.0 on gsm8k, measured 40.0") -> Flag:
    flag = Flag.objects.create(
        submission=submission, run=run, kind=kind, severity=severity, benchmark=benchmark, summary=summary,
        evidence=evidence if evidence is not None else {"claimed": 70.0, "measured": 40.0, "ci": [33.5, 46.9],
                                                         "z": 6.1, "n": 200},
    )
    if age:
        # created_at is auto_now_add; age it with a queryset update (Flag rows are not append-only).
        Flag.objects.filter(pk=flag.pk).update(created_at=timezone.now() - age)
        flag.refresh_from_db()
    FlagEvent.objects.create(flag=flag, action=FlagEvent.Action.RAISED, to_status=flag.status, message=flag.summary)
    return flag


def install_append_only_trigger() -> None:
    with connection.cursor() as cursor:
        cursor.execute(flag_event_trigger_sql(connection.vendor))


@pytest.fixture
def append_only_trigger(db) -> None:
    install_append_only_trigger()


@pytest.fixture
def people(db) -> dict[str, User]:
    """Two maintainers, an author and another author (with their own submission)."""
    return {
        "maintainer": make_user("mara", maintainer=True),
        "maintainer2": make_user("milo", maintainer=True),
        "author": make_user("alice"),
        "other_author": make_user("oscar"),
    }


@pytest.fixture
def scenario(people) -> dict[str, Any]:
    """alice's submission with a finished run and a score_mismatch flag on gsm8k; oscar's
    submission with a flag of its own."""
    submission = make_submission("alice-lab/math-7b", people["author"])
    Claim.objects.create(submission=submission, benchmark="gsm8k", score=70.0, shots=8, cot=True, chat_template=False)
    run = make_run(submission)
    make_result(run, "gsm8k", correct=80, n=200, setup={"shots": 8, "cot": True, "chat_template": False},
                claimed=70.0, verdict=BenchmarkResult.Verdict.INCONSISTENT, z=6.1)
    flag = make_flag(submission, run=run)
    other_submission = make_submission("oscar-lab/chat-3b", people["other_author"], sha=SHA_B)
    other_flag = make_flag(other_submission, kind=Flag.Kind.CONTAMINATION, severity=Flag.Severity.WARNING,
                           benchmark="gsm8k", summary="Completion overlap on gsm8k test items")
    return {"submission": submission, "run": run, "flag": flag, "other_submission": other_submission,
            "other_flag": other_flag, **people}


def maintainers_group_exists() -> bool:
    return Group.objects.filter(name="maintainers", permissions__codename="triage_flag").exists()


def verify_submission_messages(submission_id: int, *, remove: bool = False) -> list[dict[str, Any]]:
    """The `verify_submission(submission_id)` messages waiting on the real Redis broker (kombu's
    Redis transport keeps each queue as a list of JSON envelopes). With `remove`, take them off
    the queue so no worker of a later test consumes a message meant for this test's database."""
    import json

    import redis
    from django.conf import settings

    from workers.tasks import verify_submission

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    found: list[dict[str, Any]] = []
    for key in client.scan_iter(match="default*", count=100):
        if client.type(key) != b"list":
            continue
        for raw in client.lrange(key, 0, -1):
            try:
                envelope = json.loads(raw)
            except ValueError:
                continue
            headers = envelope.get("headers") or {}
            if headers.get("task") == verify_submission.name and headers.get("argsrepr") in (
                f"({submission_id},)", f"[{submission_id}]"
            ):
                found.append(envelope)
                if remove:
                    client.lrem(key, 0, raw)
    return found


@pytest.fixture
def clean_broker() -> Any:
    """Yields a list to put submission ids in; their queued verify_submission messages are
    removed from the broker at teardown."""
    submission_ids: list[int] = []
    yield submission_ids
    for submission_id in submission_ids:
        verify_submission_messages(submission_id, remove=True)
