"""One submission from the submit form to a flag on the model page, measured: which project files
it passes through (walk.FileWalk) and how many Hugging Face Hub look-ups it makes
(hub_lookups.HubLookups), at submit time and in the worker steps.

The path is the real one: the form is shown and posted through Django's test client, the Celery tasks run
eagerly in this process (task_always_eager, in the order the steps enqueue each other once their
transaction commits), and the model page is rendered. The submission claims an inflated ARC
score and a base model, so the base is measured too and provenance runs (a submission as the site
usually gets one); contamination and endpoint checks are off to stay fast.

The numbers are printed (pytest -s) and, with VERITY_WALK_OUT=path.json, written for the closing
note; MAX_WORKER_HUB_LOOKUPS is the budget the worker steps must stay within.
"""

from __future__ import annotations

import json
import os

import pytest
from django.contrib.auth import get_user_model

from leaderboard.models import Flag
from tests.golden.hub_lookups import HubLookups
from tests.golden.walk import FileWalk

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# Before the single-pipeline refactor: 8 look-ups in the worker steps (4 per model) and 2 at submit.
# Now each model is pinned once (prepare) and fetched once (measure): 2 per model, and the form's
# validation is not repeated when the row is written. Lower these when fewer are made; never raise.
MAX_WORKER_HUB_LOOKUPS = 4
MAX_SUBMIT_HUB_LOOKUPS = 2  # the submitted repo and its claimed base, once each
LIMIT = 16  # enough ARC items for a 99-point claim to be clearly inconsistent


def test_one_submission_from_form_to_flag(
    client, tiny_base, tiny_other_base, eager_celery, settings, monkeypatch, tmp_path,
    django_capture_on_commit_callbacks,
):
    # Each setting both ways: read from the environment when used (the code it was first
    # measured on) or copied into Django settings at start-up.
    monkeypatch.setenv("VERITY_CHECKS", "provenance")
    monkeypatch.setenv("VERITY_CORE_BENCHMARKS", "none")
    settings.CHECKS = ("provenance",)
    settings.CORE_BENCHMARKS = ()
    settings.INFERENCE_BACKEND = "transformers"
    settings.DEFAULT_EVAL_LIMIT = LIMIT
    settings.MODEL_CACHE_DIR = tmp_path / "model_cache"
    settings.PRIVATE_BENCHMARKS_DIR = tmp_path / "no-private-sets"
    user = get_user_model().objects.create_user("walker", "walker@example.org", "pw-walker-1")
    client.force_login(user)
    form = {
        "repo_id": tiny_base.repo_id, "revision": "main", "base_model": tiny_other_base.repo_id,
        "training": "full", "endpoint": "", "endpoint_model": "", "score_arc_challenge": "99",
        # Anyone may ask for a public model to be verified; an author submission must also prove
        # control of the repo (a field the form did not have before the ownership rule).
        "kind": "community",
    }

    with FileWalk() as walk:
        assert client.get("/submit/").status_code == 200
        with HubLookups() as at_submit, django_capture_on_commit_callbacks(execute=False) as queued:
            response = client.post("/submit/", form)
        assert response.status_code == 302, response.content.decode()[:2000]
        with HubLookups() as in_workers, django_capture_on_commit_callbacks(execute=True):
            for callback in queued:  # the submit view's enqueue, after its transaction committed
                callback()
        page = client.get(f"/models/{tiny_base.repo_id}/")
    flag = Flag.objects.get(submission__repo_id=tiny_base.repo_id, kind="score_mismatch")
    assert page.status_code == 200 and f'data-flag="{flag.pk}"' in page.content.decode()

    areas = walk.by_area()
    result = {
        "files": walk.files,
        "file_count": len(walk.files),
        "by_area": {area: len(files) for area, files in areas.items()},
        "hub_lookups_at_submit": at_submit.total,
        "hub_lookups_in_workers": in_workers.total,
        "hub_lookups_detail": {"submit": at_submit.summary(), "workers": in_workers.summary()},
        "hub_lookups_calls": [vars(call) for call in [*at_submit.calls, *in_workers.calls]],
    }
    print(json.dumps(result, indent=2))
    out = os.environ.get("VERITY_WALK_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    assert 0 < in_workers.total <= MAX_WORKER_HUB_LOOKUPS, in_workers.summary()
    assert 0 < at_submit.total <= MAX_SUBMIT_HUB_LOOKUPS, at_submit.summary()
