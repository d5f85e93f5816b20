"""Issue 8 acceptance: a private held-out item never leaves the private store.

A unique canary string is planted in a private item (added with the real `add_private_benchmark`
command), a submission is verified end to end by a real Celery worker on Redis (transformers
backend, contamination check on), and then every place a secret could surface is searched: every
page (as a maintainer, so triage pages too), every API response, the exports, every database row,
the worker's log and every key and value in the worker's Redis database. The private set's
aggregate must still be measured and shown, so the test fails if the set was simply skipped.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.core import serializers
from django.core.management import call_command
from django.test import Client, override_settings

from leaderboard.models import BenchmarkResult, EvaluationRun, Flag, ModelSubmission, SampleResult
from tests.fixtures_services import wait_for
from tests.workers.test_pipeline_worker import FINISHED, _enqueue, _submit

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIMIT = 8
SLUG = "private_canary_mc"


def _private_items(canary: str) -> str:
    rows = [
        {"question": f"Which word is the secret {canary}?", "choices": ["alpha", canary, "gamma"], "answer": 1},
        {"question": "What is two plus two?", "choices": ["3", "4", "5", "6"], "answer": "B", "id": f"id-{canary}"},
        {"question": "Which is a colour?", "choices": ["red", "table"], "answer": 0},
    ]
    return "".join(json.dumps(row) + "\n" for row in rows)


def _redis_dump(url: str) -> str:
    """Every key and value in the worker's Redis database, as text."""
    import redis

    client = redis.Redis.from_url(url)
    parts: list[str] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        if kind == "string":
            value = client.get(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


def _database_dump() -> str:
    from django.apps import apps

    return "\n".join(
        serializers.serialize("json", model.objects.all()) for model in apps.get_app_config("leaderboard").get_models()
    )


def _maintainer_client() -> Client:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("canary-maintainer", "m@example.org", "pw-canary-1")
    user.user_permissions.add(Permission.objects.get(codename="triage_flag"))
    client = Client()
    client.force_login(user)
    return client


def test_private_item_text_is_never_exposed_anywhere(tiny_base, start_worker, tmp_path, private_redis):
    canary = f"CANARY{uuid.uuid4().hex}"
    private_dir = tmp_path / "private_benchmarks"
    items = tmp_path / "items.jsonl"
    items.write_text(_private_items(canary))
    with override_settings(PRIVATE_BENCHMARKS_DIR=private_dir):
        call_command("add_private_benchmark", SLUG, str(items), "--format", "mc")
    items.unlink()  # only the private store holds the items now

    worker = start_worker(
        "default,gpu",
        extra_env={
            "INFERENCE_BACKEND": "transformers",
            "DEFAULT_EVAL_LIMIT": str(LIMIT),
            "MODEL_CACHE_DIR": str(tmp_path / "model_cache"),
            "PRIVATE_BENCHMARKS_DIR": str(private_dir),
            "VERITY_CHECKS": "contamination",
            "VERITY_CORE_BENCHMARKS": "none",
            "OMP_NUM_THREADS": "1",
            "REDIS_URL": private_redis.url,
        },
    )
    # An inflated claim: a flag is raised, so the triage pages have something to render.
    submission = _submit(tiny_base.repo_id, [{"benchmark": "arc_challenge", "score": 99.0}])
    _enqueue(submission.id, private_redis.url)
    wait_for(
        lambda: ModelSubmission.objects.filter(id=submission.id, status__in=FINISHED).exists(),
        timeout=150,
        interval=1,
        message=f"submission done\n{worker.log_text()[-3000:]}",
    )
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.FLAGGED, (submission.report or {}).get("benchmarks")

    # The private set was measured, stored as private, and its items were redacted.
    run = submission.runs.get(role=EvaluationRun.Role.SUBMISSION)
    result = BenchmarkResult.objects.get(run=run, benchmark=SLUG)
    assert result.private and result.n == 3 and 0.0 <= result.measured <= 100.0  # all 3 items (< LIMIT)
    private_rows = SampleResult.objects.filter(run=run, benchmark=SLUG)
    assert private_rows.count() == 3
    assert all(r.prompt == "" and r.output == "" and r.gold == "" and r.item_id == "" for r in private_rows)
    contamination = submission.report["contamination"]
    assert contamination["status"] == "ok", contamination

    org, name = tiny_base.repo_id.split("/")
    flags = list(Flag.objects.filter(submission=submission))
    assert flags
    client = _maintainer_client()
    urls = [
        "/",
        "/plots/",
        f"/submissions/{submission.id}/",
        f"/submissions/{submission.id}/progress",
        f"/models/{org}/{name}/",
        f"/models/{org}/{name}/samples?submission={submission.id}&benchmark=arc_challenge",
        "/triage/",
        *[f"/triage/flags/{flag.id}/" for flag in flags],
        "/api/leaderboard",
        "/api/leaderboard.csv",
        f"/api/submissions/{submission.id}",
        "/api/flags",
        f"/api/models/{org}/{name}",
        f"/api/models/{org}/{name}/eval_results.yaml",
    ]
    # The sample explorer refuses a private set's items outright; what it answers is searched too.
    private_samples = [
        f"/models/{org}/{name}/samples?submission={submission.id}&benchmark={SLUG}{show}"
        for show in ("", "&show=wrong", "&show=errored")
    ]
    bodies: dict[str, str] = {}
    for url in urls + private_samples:
        response = client.get(url)
        assert response.status_code == (403 if url in private_samples else 200), (url, response.status_code)
        bodies[url] = response.content.decode()
    # The aggregate IS shown: the model API lists the private set with its measured score.
    model_api = bodies[f"/api/models/{org}/{name}"]
    assert SLUG in model_api and SLUG in bodies[f"/models/{org}/{name}/"], model_api[:2000]
    assert SLUG in json.dumps(submission.report)

    places = {
        **bodies,
        "database": _database_dump(),
        "worker log": worker.log_text(),
        "redis": _redis_dump(private_redis.url),
    }
    leaked = [place for place, text in places.items() if canary in text]
    assert leaked == [], f"the canary leaked into {leaked}"
