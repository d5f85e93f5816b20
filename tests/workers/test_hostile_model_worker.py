"""Acceptance through a real worker: the hostile code model (trained to print the environment,
raise with it, write the old setup-failure marker and exit with the old harness code) is verified
by a real Celery worker whose own environment holds canary secrets — SECRET_KEY, HF_TOKEN and the
database password (PostgreSQL's trust auth accepts any password, so the canary is really in the
URL the worker connects with). No canary may appear in the report, any database row, any page or
API response, the worker's log or Redis; HumanEval scores 0 as wrong answers with no harness
error, so the run stays valid and the inflated claim is judged."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest

from leaderboard.models import BenchmarkResult, EvaluationRun, ModelSubmission, SampleResult
from tests.fixtures_services import test_database_url as worker_database_url
from tests.fixtures_services import wait_for
from tests.verification.sandbox.hostile_model import (  # noqa: F401 - fixtures
    CANARIES,
    HELD_OUT_ITEMS,
    find_canaries,
    hostile_coder,
)
from tests.workers.test_pipeline_worker import FINISHED, _enqueue, _submit
from tests.workers.test_private_canary import _database_dump, _maintainer_client, _redis_dump

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _canary_database_url() -> str:
    url = urlparse(worker_database_url())
    return f"postgres://{url.username or 'postgres'}:{CANARIES['DATABASE_PASSWORD']}@{url.hostname}:{url.port}{url.path}"


def test_a_hostile_model_leaks_no_worker_secret_anywhere(hostile_coder, start_worker, tmp_path, private_redis):
    worker = start_worker(
        "default,gpu",
        extra_env={
            "SECRET_KEY": CANARIES["SECRET_KEY"],
            "HF_TOKEN": CANARIES["HF_TOKEN"],
            "DATABASE_URL": _canary_database_url(),
            "INFERENCE_BACKEND": "transformers",
            "DEFAULT_EVAL_LIMIT": str(HELD_OUT_ITEMS),
            "MODEL_CACHE_DIR": str(tmp_path / "model_cache"),
            "VERITY_CHECKS": "none",
            "VERITY_CORE_BENCHMARKS": "none",
            "OMP_NUM_THREADS": "1",
            "REDIS_URL": private_redis.url,
        },
    )
    # An inflated claim: it must be judged (a flag), not escape as an invalid run.
    submission = _submit(hostile_coder.repo_id, [{"benchmark": "humaneval", "score": 90.0}])
    _enqueue(submission.id, private_redis.url)
    wait_for(
        lambda: ModelSubmission.objects.filter(id=submission.id, status__in=FINISHED).exists(),
        timeout=240, interval=1, message=f"submission done\n{worker.log_text()[-3000:]}",
    )
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.FLAGGED, submission.report

    run = submission.runs.get(role=EvaluationRun.Role.SUBMISSION)
    result = BenchmarkResult.objects.get(run=run, benchmark="humaneval")
    assert result.n == HELD_OUT_ITEMS and result.n_errors == 0 and result.measured == 0.0
    assert result.verdict == "inconsistent"
    assert [f["kind"] for f in submission.report["flags"]] == ["score_mismatch"]
    outputs = list(SampleResult.objects.filter(run=run).values_list("output", flat=True))
    assert outputs and all("os.environ" in text for text in outputs)  # the model really is hostile

    org, name = hostile_coder.repo_id.split("/")
    client = _maintainer_client()
    urls = [
        "/", f"/submissions/{submission.id}/", f"/models/{org}/{name}/",
        f"/models/{org}/{name}/samples?submission={submission.id}&benchmark=humaneval",
        "/api/leaderboard", "/api/leaderboard.csv", f"/api/submissions/{submission.id}",
        f"/api/models/{org}/{name}", f"/api/models/{org}/{name}/eval_results.yaml", "/triage/",
    ]
    places = {url: client.get(url).content.decode() for url in urls}
    places.update({
        "report": json.dumps(submission.report),
        "database": _database_dump(),
        "worker log": worker.log_text(),
        "redis": _redis_dump(private_redis.url),
    })
    leaked = {place: find_canaries(text) for place, text in places.items() if find_canaries(text)}
    assert leaked == {}, f"canaries leaked: {leaked}"
