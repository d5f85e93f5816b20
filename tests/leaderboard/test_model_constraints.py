"""Invariants held by the database itself (PostgreSQL in tests): bad rows are refused whatever
code path writes them, and nothing is saved."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from leaderboard.models import (
    BenchmarkResult,
    Claim,
    EvaluationRun,
    Flag,
    FlagEvent,
    ModelSubmission,
    SampleResult,
)

pytestmark = pytest.mark.django_db


def test_tests_run_on_postgresql():
    assert connection.vendor == "postgresql", "the suite must run against the real PostgreSQL"


@pytest.fixture
def submission():
    return ModelSubmission.objects.create(repo_id="org/model", pinned_sha="a" * 40)


def refused(factory) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        factory()


@pytest.mark.parametrize(
    "repo_id",
    ["no-namespace", "org/", "/name", "org/na me", "org//name", "org/name/extra", "org--x/name", "org/na..me",
     "-org/name", "org/name-", "o" * 97 + "/name", "org/naïve"],
)
def test_malformed_repo_id_is_refused(repo_id):
    refused(lambda: ModelSubmission.objects.create(repo_id=repo_id))
    assert not ModelSubmission.objects.filter(repo_id=repo_id).exists()


@pytest.mark.parametrize("repo_id", ["meta-llama/Llama-3.1-70B", "mattshumer/Reflection-Llama-3.1-70B", "a/b", "Org_1/m.v2"])
def test_wellformed_repo_ids_are_accepted(repo_id):
    assert ModelSubmission.objects.create(repo_id=repo_id).pk


@pytest.mark.parametrize("score", [140, -0.5, 100.01])
def test_claim_score_out_of_range_is_refused(submission, score):
    refused(lambda: Claim.objects.create(submission=submission, benchmark="gsm8k", score=score))
    assert Claim.objects.count() == 0


def test_claim_bounds_accepted_and_one_claim_per_benchmark(submission):
    Claim.objects.create(submission=submission, benchmark="gsm8k", score=100)
    Claim.objects.create(submission=submission, benchmark="mmlu", score=0)
    refused(lambda: Claim.objects.create(submission=submission, benchmark="gsm8k", score=50))
    refused(lambda: Claim.objects.create(submission=submission, benchmark="GSM 8K", score=50))
    assert Claim.objects.count() == 2


def test_pinned_sha_and_status_shapes(submission):
    refused(lambda: ModelSubmission.objects.create(repo_id="org/m", pinned_sha="main"))
    refused(lambda: ModelSubmission.objects.create(repo_id="org/m", status="approved"))
    refused(lambda: ModelSubmission.objects.create(repo_id="org/m", status="rejected"))  # no reason
    assert ModelSubmission.objects.create(repo_id="org/m", status="rejected", rejection_reason="pickle weights").pk


def _result(run, **overrides):
    values = dict(run=run, benchmark="gsm8k", benchmark_version="1", setup_key='{"shots": 5}',
                  measured=50.0, ci_low=45.0, ci_high=55.0, n=100)
    values.update(overrides)
    return BenchmarkResult.objects.create(**values)


def test_benchmark_result_invariants(submission):
    run = EvaluationRun.objects.create(submission=submission, model_repo="org/model", model_sha="a" * 40)
    _result(run)
    refused(lambda: _result(run))  # same run + benchmark + version + setup
    refused(lambda: _result(run, setup_key="{}", measured=140, ci_high=150))
    refused(lambda: _result(run, setup_key="{}", ci_low=51))  # interval must bracket the score
    refused(lambda: _result(run, setup_key="{}", n=10, n_errors=11))
    refused(lambda: _result(run, setup_key="{}", claimed=120))
    assert BenchmarkResult.objects.count() == 1
    assert _result(run, setup_key='{"shots": 8}', measured=0, ci_low=0, ci_high=7.1).pk


def test_run_invariants(submission):
    refused(lambda: EvaluationRun.objects.create(submission=submission, model_repo="x", progress_done=5, progress_total=3))
    refused(lambda: EvaluationRun.objects.create(model_repo="x", role="submission"))  # needs a submission
    assert EvaluationRun.objects.create(model_repo="org/base", role="base").pk


def test_errored_sample_is_never_correct(submission):
    run = EvaluationRun.objects.create(submission=submission, model_repo="org/model")
    refused(lambda: SampleResult.objects.create(run=run, benchmark="gsm8k", index=0, correct=True, error="timeout"))
    SampleResult.objects.create(run=run, benchmark="gsm8k", index=0, correct=False, error="timeout")
    refused(lambda: SampleResult.objects.create(run=run, benchmark="gsm8k", index=0))  # scored once
    assert SampleResult.objects.count() == 1


def test_flags_and_append_only_events(submission):
    refused(lambda: Flag.objects.create(submission=submission, kind="made_up", severity="info", summary="x"))
    refused(lambda: Flag.objects.create(submission=submission, kind="score_mismatch", severity="info", summary="",))
    refused(lambda: Flag.objects.create(submission=submission, kind="score_mismatch", severity="info",
                                        summary="x", status="dismissed"))
    flag = Flag.objects.create(submission=submission, kind="score_mismatch", severity="critical", summary="gsm8k")
    event = FlagEvent.objects.create(flag=flag, action="raised", to_status="open")
    event.message = "edited"
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()
    assert FlagEvent.objects.get().message == ""
