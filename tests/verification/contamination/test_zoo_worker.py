"""One planted and one honest zoo model through a real Celery worker process (Redis broker,
PostgreSQL results): the leak is flagged for contamination, the train-split fine-tune is not."""

from __future__ import annotations

import pytest

from tests.workers.pipeline_helpers import wait_for
from tests.verification.contamination.conftest import MEMORIZED

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_worker_flags_the_leak_and_not_the_train_split_fine_tune(contamination_models, start_worker, tmp_path):
    from leaderboard.models import Claim, ModelSubmission
    from workers.tasks import verify_submission

    worker = start_worker("default,gpu", extra_env={
        "INFERENCE_BACKEND": "transformers", "DEFAULT_EVAL_LIMIT": str(MEMORIZED),
        "MODEL_CACHE_DIR": str(tmp_path / "model_cache"), "VERITY_CHECKS": "contamination",
        "VERITY_CORE_BENCHMARKS": "none", "OMP_NUM_THREADS": "1",
    })
    submissions = {}
    for name in ("leak", "train-only"):
        submission = ModelSubmission.objects.create(
            repo_id=contamination_models[name].repo_id, requested_revision="main", claimed_base="")
        Claim.objects.create(submission=submission, benchmark="gsm8k", score=0.0, shots=0)
        verify_submission.delay(submission.id)
        submissions[name] = submission
    ids = [s.id for s in submissions.values()]
    finished = (ModelSubmission.Status.VERIFIED, ModelSubmission.Status.FLAGGED, ModelSubmission.Status.INCOMPLETE,
                ModelSubmission.Status.FAILED, ModelSubmission.Status.REJECTED)
    wait_for(lambda: ModelSubmission.objects.filter(id__in=ids, status__in=finished).count() == 2,
             timeout=900, interval=2, message="both submissions done", workers=[worker])

    leak, honest = (submissions[n] for n in ("leak", "train-only"))
    for submission in (leak, honest):
        submission.refresh_from_db()
        assert submission.report["contamination"]["status"] == "ok", worker.log_text()[-3000:]
    assert leak.status == ModelSubmission.Status.FLAGGED
    assert leak.flags.filter(kind="contamination", benchmark="gsm8k").exists(), leak.report["contamination"]["summary"]
    assert not honest.flags.filter(kind="contamination").exists(), honest.report["contamination"]["summary"]
    assert not honest.report["contamination"]["flagged"]
