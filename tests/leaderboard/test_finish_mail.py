"""The finish e-mail, through the real path: the pipeline step that sets a submission's final
status (workers.steps._publish, workers.liveness.fail_submission) sends verity.notify_finished
once its transaction commits; the task runs eagerly here and Django's locmem backend keeps the
mail. The author and the model's watchers are told, each in their own e-mail, once."""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from leaderboard.models import EvaluationRun, ModelSubmission, Watch
from leaderboard.services.notifications import notify_submission_finished
from tests.leaderboard.test_triage_fixtures import make_user
from verification.compare import make_flag
from workers import liveness, steps
from workers.celery_app import send

pytestmark = pytest.mark.django_db

REPO = "acme/finishing"
CHECKED = {"run": {"checks": []}}  # every check that applies ran


@pytest.fixture
def author():
    return make_user("author")


@pytest.fixture
def running(author):
    submission = ModelSubmission.objects.create(repo_id=REPO, submitter=author, status=ModelSubmission.Status.RUNNING,
                                                pinned_sha="a" * 40)
    run = EvaluationRun.objects.create(submission=submission, model_repo=REPO, model_sha="a" * 40,
                                       status=EvaluationRun.Status.DONE, finished_at=timezone.now())
    return submission, run


def watch(repo_id: str, *names: str) -> None:
    for name in names:
        Watch.objects.create(user=make_user(name), repo_id=repo_id)


def by_recipient() -> dict[str, list]:
    found: dict[str, list] = {}
    for message in mail.outbox:
        assert len(message.to) == 1 and not message.cc and not message.bcc  # nobody sees another's address
        found.setdefault(message.to[0], []).append(message)
    return found


def publish(submission, run, report, callbacks_runner) -> str:
    with callbacks_runner(execute=False) as callbacks:
        status = steps._publish(submission.id, run, {"benchmarks": {}, "flags": [], **report})
    assert mail.outbox == []  # nothing is announced before the commit
    for callback in callbacks:
        callback()
    return status


def test_a_verified_submission_mails_its_author_and_watchers_after_commit(
        running, author, django_capture_on_commit_callbacks, eager_celery):
    submission, run = running
    watch(REPO, "w1", "w2")
    Watch.objects.create(user=author, repo_id=REPO)  # the author watching too gets one e-mail
    watch("acme/other", "stranger")
    assert publish(submission, run, CHECKED, django_capture_on_commit_callbacks) == "verified"
    mails = by_recipient()
    assert sorted(mails) == ["author@example.org", "w1@example.org", "w2@example.org"]
    assert all(len(sent) == 1 for sent in mails.values())
    to_author = mails["author@example.org"][0]
    assert to_author.subject == f"[Verity] {REPO} finished: verified"
    assert "your submission" in to_author.body and "Result: verified" in to_author.body
    assert f"/models/{REPO}/?submission={submission.pk}" in to_author.body
    assert f"/submissions/{submission.pk}/" in to_author.body
    to_watcher = mails["w1@example.org"][0]
    assert "a model you watch" in to_watcher.body and "/me/watched/" in to_watcher.body


def test_a_flagged_submission_mails_the_flag_and_the_finish(running, django_capture_on_commit_callbacks, eager_celery):
    submission, run = running
    watch(REPO, "w1")
    flag = make_flag("score_mismatch", "critical", "claimed 90.0 on gsm8k, measured 50.0 (log /var/lib/verity/r/1)",
                     {"items": ["PRIVATE ITEM 17*23"]}, benchmark="gsm8k")
    assert publish(submission, run, {**CHECKED, "flags": [flag]}, django_capture_on_commit_callbacks) == "flagged"
    mails = by_recipient()
    subjects = {address: sorted(m.subject for m in sent) for address, sent in mails.items()}
    expected = sorted([f"[Verity] {REPO} finished: flagged", f"[Verity] Flag raised on {REPO}: score_mismatch"])
    assert subjects == {"author@example.org": expected, "w1@example.org": expected}
    finish = next(m for m in mails["w1@example.org"] if "finished" in m.subject)
    assert "Flag: Score Mismatch (critical) on gsm8k: claimed 90.0 on gsm8k, measured 50.0 (log [path])" in finish.body
    for message in mails["w1@example.org"]:
        assert "PRIVATE ITEM" not in message.body and "/reply" not in message.body  # public words only
        assert "/var/lib/verity" not in message.body
    assert "/reply" in next(m for m in mails["author@example.org"] if "Flag raised" in m.subject).body


def test_an_incomplete_submission_says_so(running, django_capture_on_commit_callbacks, eager_celery):
    submission, run = running
    assert publish(submission, run, {}, django_capture_on_commit_callbacks) == "incomplete"  # no check log
    [message] = mail.outbox
    assert message.subject.endswith("finished: incomplete") and "not shown as verified" in message.body


def test_a_failed_submission_mails_its_scrubbed_reason(running, django_capture_on_commit_callbacks, eager_celery):
    submission, _ = running
    watch(REPO, "w1")
    with django_capture_on_commit_callbacks(execute=True):
        assert liveness.fail_submission(submission.id, "measurement failed: OOM in /var/lib/verity/worker-3/cache")
    mails = by_recipient()
    assert sorted(mails) == ["author@example.org", "w1@example.org"]
    body = mails["author@example.org"][0].body
    assert "Result: failed" in body and "Reason: measurement failed: OOM in [path]" in body
    assert "/var/lib/verity" not in body
    # A submission that is no longer pending cannot fail again: no second e-mail.
    with django_capture_on_commit_callbacks(execute=True):
        assert not liveness.fail_submission(submission.id, "again")
    assert len(mail.outbox) == 2


def test_a_task_delivered_twice_sends_once(running, django_capture_on_commit_callbacks, eager_celery):
    submission, run = running
    publish(submission, run, CHECKED, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    send("verity.notify_finished", submission.id)  # the broker redelivers (acks_late)
    assert len(mail.outbox) == 1


def test_nothing_is_sent_for_a_submission_still_running_or_gone(running, eager_celery):
    submission, _ = running
    send("verity.notify_finished", submission.id)
    assert notify_submission_finished(10**9) == 0
    assert mail.outbox == []


def test_a_rolled_back_publish_sends_nothing(running, django_capture_on_commit_callbacks, eager_celery):
    submission, run = running
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            steps._publish(submission.id, run, {"benchmarks": {}, "flags": [], **CHECKED})
            raise RuntimeError("the database went away before the commit")
    assert callbacks == [] and mail.outbox == []
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.RUNNING
