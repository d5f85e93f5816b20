"""The safety check through a real Celery worker: a submission measured with XSTest in its core
plan finishes, its model page shows the safety section and the model API carries the two rates;
with the listing gate on (VERITY_REQUIRE_SAFETY) a model whose run never measured XSTest is kept
off the public board, its page saying why, while the checked one stays listed."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache

from leaderboard.models import Claim, LeaderboardEntry, ModelSubmission
from tests.workers.pipeline_helpers import wait_for
from tests.workers.test_pipeline_worker import FINISHED

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The first 30 XSTest prompts: 25 safe homonyms and 5 unsafe contrasts, so both rates exist.
SAFETY_LIMIT = 30


def _env(tmp_path, redis_url: str, core: str, limit: int) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "INFERENCE_BACKEND": "transformers",
        "DEFAULT_EVAL_LIMIT": str(limit),
        "MODEL_CACHE_DIR": str(tmp_path / "model_cache"),
        "VERITY_CHECKS": "none",
        "VERITY_CORE_BENCHMARKS": core,
        "OMP_NUM_THREADS": "1",
    }


def _submit_and_finish(start_worker, env: dict[str, str], repo_id: str, claims: list[dict], redis_url: str):
    """One worker with `env` verifies one new submission of `repo_id` to its end."""
    from workers.celery_app import app
    from workers.tasks import verify_submission

    worker = start_worker("default,gpu", extra_env=env)
    submission = ModelSubmission.objects.create(repo_id=repo_id, requested_revision="main")
    for claim in claims:
        Claim.objects.create(submission=submission, **claim)
    with app.connection_for_write(redis_url) as connection:
        verify_submission.apply_async((submission.id,), connection=connection)
    wait_for(lambda: ModelSubmission.objects.filter(pk=submission.pk, status__in=FINISHED).exists(),
             timeout=150, interval=1, message=f"{repo_id} verified", workers=[worker])
    worker.stop()
    submission.refresh_from_db()
    return submission


def _board(client) -> list[str]:
    cache.clear()  # the board's fragments are cached for a few seconds
    return re.findall(r'data-repo="([^"]+)"', client.get("/").content.decode())


def test_safety_section_rates_and_listing_gate_through_a_real_worker(
    tiny_base, tiny_other_base, start_worker, tmp_path, private_redis, client, settings
):
    checked = _submit_and_finish(start_worker, _env(tmp_path, private_redis.url, "xstest", SAFETY_LIMIT),
                                 tiny_base.repo_id, [], private_redis.url)
    assert checked.status in (ModelSubmission.Status.VERIFIED, ModelSubmission.Status.FLAGGED,
                              ModelSubmission.Status.INCOMPLETE), checked.rejection_reason
    section = checked.report["safety"]
    assert section["status"] == "ok" and section["refusal_unsafe"]["n"] == 5 and section["refusal_safe"]["n"] == 25
    run = checked.runs.get(role="submission")
    assert run.samples.filter(benchmark="xstest").count() == SAFETY_LIMIT
    assert {s.details["label"] for s in run.samples.filter(benchmark="xstest")} <= {"refusal", "compliance"}

    unchecked = _submit_and_finish(start_worker, _env(tmp_path, private_redis.url, "none", 4),
                                   tiny_other_base.repo_id, [{"benchmark": "arc_challenge", "score": 50.0}],
                                   private_redis.url)
    assert unchecked.report["safety"]["status"] == "not_run"
    entries = {e.repo_id: e for e in LeaderboardEntry.objects.all()}
    assert entries[tiny_base.repo_id].safety_status == "ok"
    assert entries[tiny_base.repo_id].refusal_unsafe == pytest.approx(section["refusal_unsafe"]["rate"])
    assert entries[tiny_other_base.repo_id].safety_status == "not_run"

    # the model page's safety section and the model API's rates
    page = client.get(f"/models/{tiny_base.repo_id}/").content.decode()
    assert 'id="safety-section" data-status="ok"' in page and 'id="safety-refusal-unsafe"' in page
    assert 'id="safety-classifier-agreement"' in page
    body = client.get(f"/api/models/{tiny_base.repo_id}").json()
    assert body["safety"]["refusal_unsafe"]["rate"] == pytest.approx(section["refusal_unsafe"]["rate"])
    assert body["safety"]["refusal_safe"]["n"] == 25
    assert body["entry"]["refusal_safe"] == pytest.approx(section["refusal_safe"]["rate"])
    samples = client.get(f"/models/{tiny_base.repo_id}/samples?submission={checked.pk}&benchmark=xstest")
    assert samples.status_code == 200 and "(30 items)" in samples.content.decode()

    # the listing gate: off, both are listed; on, only the checked model
    settings.REQUIRE_SAFETY = False
    assert sorted(_board(client)) == sorted([tiny_base.repo_id, tiny_other_base.repo_id])
    settings.REQUIRE_SAFETY = True
    assert _board(client) == [tiny_base.repo_id]
    assert [r["repo_id"] for r in client.get("/api/leaderboard").json()["results"]] == [tiny_base.repo_id]
    gated = client.get(f"/models/{tiny_other_base.repo_id}/")
    assert gated.status_code == 200 and 'id="unlisted-reason"' in gated.content.decode()
    assert client.get(f"/api/models/{tiny_other_base.repo_id}").json()["entry"] is None
