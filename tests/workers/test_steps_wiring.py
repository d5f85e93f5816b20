"""The workers' wiring on the real PostgreSQL: a raised flag e-mails the author
once committed, and registered KnownBase rows of the same weight shapes become provenance
candidates."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from leaderboard.models import KnownBase, ModelSubmission
from leaderboard.services.flags import do_raise_flag
from verification import pipeline
from workers import steps
from verification.checks import ModelRef
from verification.compare import make_flag
from verification.provenance import shape_signature

pytestmark = pytest.mark.django_db


def test_a_flag_raised_by_the_pipeline_emails_the_author_after_commit(django_capture_on_commit_callbacks, eager_celery):
    author = get_user_model().objects.create_user("author", "author@example.org", "pw-author-1")
    submission = ModelSubmission.objects.create(repo_id="org/flagged", submitter=author)
    flag = make_flag("score_mismatch", "critical", "claimed 90.0 on mmlu, measured 30.0", {}, benchmark="mmlu")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = do_raise_flag(submission, None, flag)
    assert mail.outbox == []  # nothing is sent for a flag that may still roll back
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["author@example.org"]
    assert "score_mismatch" in mail.outbox[0].subject and str(created.id) in mail.outbox[0].body
    # The same finding seen again is a note on the open flag: no second e-mail.
    with django_capture_on_commit_callbacks(execute=True):
        again = do_raise_flag(submission, None, flag)
    assert again.id == created.id and len(mail.outbox) == 1


def test_known_bases_with_matching_shapes_become_provenance_candidates(
    tiny_base, tiny_other_base, hf_cache, tmp_path, settings
):
    settings.MODEL_CACHE_DIR = tmp_path / "model_cache"
    KnownBase.objects.create(repo_id=tiny_other_base.repo_id, shape_signature=shape_signature(tiny_other_base.path))
    KnownBase.objects.create(repo_id="org/other-shape", shape_signature="0" * 64)
    KnownBase.objects.create(repo_id=tiny_base.repo_id, shape_signature=shape_signature(tiny_base.path))
    model = ModelRef(tiny_base.repo_id, tiny_base.repo_id, tiny_base.sha, tiny_base.path)
    with ExitStack() as stack:
        candidates = [
            pipeline.CandidateSource(k.repo_id, k.revision or None, k.shape_signature)
            for k in KnownBase.objects.order_by("repo_id")
        ]
        refs = pipeline.candidate_refs(candidates, model, None, steps.model_cache(), stack)
        same_shape = shape_signature(tiny_other_base.path) == shape_signature(tiny_base.path)
        expected = [tiny_other_base.repo_id] if same_shape else []
        assert [r.repo_id for r in refs] == expected  # never the model itself, never another shape
        assert all(r.path is not None and r.sha == tiny_other_base.sha for r in refs)
    assert same_shape, "tiny-other is built as a same-architecture alternative base"
