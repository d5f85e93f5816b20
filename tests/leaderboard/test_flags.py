"""The one flag writer: a new finding is a flag with its 'raised' event and one e-mail after the
commit; a finding that already stands is a 'seen again' note, not a second flag."""

from __future__ import annotations

import pytest
from django.core import mail

from leaderboard.models import Flag, FlagEvent
from leaderboard.services import flags
from tests.leaderboard.test_triage_fixtures import make_run, make_submission, make_user
from verification.compare import make_flag

pytestmark = pytest.mark.django_db


@pytest.fixture
def submission():
    return make_submission("alice-lab/math-7b", make_user("alice"))


def _actions(flag: Flag) -> list[str]:
    return list(FlagEvent.objects.filter(flag=flag).values_list("action", flat=True))


def test_a_new_finding_is_raised_and_mailed_after_commit(submission, django_capture_on_commit_callbacks, eager_celery):
    run = make_run(submission)
    report_flag = make_flag("score_mismatch", "critical", "claimed 90.0, measured 30.0", {"z": 9.0}, benchmark="mmlu")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = flags.do_raise_flag(submission, run, report_flag)
    assert mail.outbox == []  # a flag that may still roll back is not announced
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1 and "score_mismatch" in mail.outbox[0].subject
    assert (created.kind, created.severity, created.benchmark, created.run_id) == (
        "score_mismatch", "critical", "mmlu", run.id)
    assert created.evidence == {"z": 9.0} and created.status == Flag.Status.OPEN
    raised = FlagEvent.objects.get(flag=created)
    assert (raised.action, raised.to_status, raised.data) == ("raised", "open", {"kind": "score_mismatch"})


def test_a_standing_finding_seen_again_is_a_note(submission, django_capture_on_commit_callbacks, eager_celery):
    first = flags.do_raise_flag(submission, None, make_flag("contamination", "warning", "overlap", benchmark="gsm8k"))
    run = make_run(submission)
    with django_capture_on_commit_callbacks(execute=True):
        again = flags.do_raise_flag(
            submission, run, make_flag("contamination", "critical", "overlap again", {"methods": 3}, benchmark="gsm8k"))
    assert again.pk == first.pk and Flag.objects.filter(submission=submission).count() == 1
    assert mail.outbox == [] and _actions(first) == ["raised", "note"]
    note = FlagEvent.objects.get(flag=first, action="note")
    assert note.message == "seen again: overlap again" and note.data == {"run": run.id, "evidence": {"methods": 3}}
    # Confirmed still stands; another benchmark is another finding.
    Flag.objects.filter(pk=first.pk).update(status=Flag.Status.CONFIRMED)
    assert flags.do_raise_flag(submission, None, make_flag("contamination", "warning", "x", benchmark="gsm8k")).pk == first.pk
    other = flags.do_raise_flag(submission, None, make_flag("contamination", "warning", "x", benchmark="mmlu"))
    assert other.pk != first.pk


@pytest.mark.parametrize("decided", [Flag.Status.DISMISSED, Flag.Status.RESOLVED])
def test_a_decided_finding_seen_again_is_raised_anew(submission, decided):
    first = flags.do_raise_flag(submission, None, make_flag("invalid_run", "critical", "errors", benchmark="gsm8k"))
    Flag.objects.filter(pk=first.pk).update(status=decided, decision_reason="fixed")
    again = flags.do_raise_flag(submission, None, make_flag("invalid_run", "critical", "errors", benchmark="gsm8k"))
    assert again.pk != first.pk and _actions(again) == ["raised"]


def test_weights_changed_is_the_same_finding_only_for_the_same_sha(submission):
    def weights_flag(sha: str | None) -> dict:
        return make_flag("weights_changed", "warning", f"branch moved to {sha}",
                         {"verified_sha": "a" * 40, "current_sha": sha})

    first = flags.do_raise_flag(submission, None, weights_flag("c" * 40))
    assert flags.duplicate_of(submission, weights_flag("c" * 40)).pk == first.pk
    # Whatever maintainers decided, the same sha is the same finding.
    Flag.objects.filter(pk=first.pk).update(status=Flag.Status.DISMISSED, decision_reason="known")
    assert flags.duplicate_of(submission, weights_flag("c" * 40)).pk == first.pk
    # A standing weights_changed flag does not hide a move to another sha, or a vanished repo.
    Flag.objects.filter(pk=first.pk).update(status=Flag.Status.OPEN, decision_reason="")
    assert flags.duplicate_of(submission, weights_flag("d" * 40)) is None
    second = flags.do_raise_flag(submission, None, weights_flag("d" * 40))
    gone = flags.do_raise_flag(submission, None, weights_flag(None))
    assert len({first.pk, second.pk, gone.pk}) == 3
    assert flags.duplicate_of(submission, weights_flag(None)).pk == gone.pk


def test_a_malformed_flag_is_refused(submission):
    with pytest.raises(ValueError):
        flags.do_raise_flag(submission, None, {"kind": "vibes", "severity": "warning", "summary": "x"})
    assert not Flag.objects.exists()
