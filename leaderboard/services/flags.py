"""Raising a flag on a submission: the one writer of new Flag rows, used by the workers (a
report's flags, the weights re-check) and by maintainers' triage (a re-comparison's flags).

A finding that already stands is not raised twice: a re-run seeing the same problem adds a
"seen again" note with its evidence to the existing flag, so the author gets one e-mail and
maintainers one thread per finding.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from leaderboard.models import EvaluationRun, Flag, FlagEvent, ModelSubmission
from leaderboard.services import notifications
from workers.celery_app import send

log = logging.getLogger(__name__)

# A flag in these states is a finding that stands; a dismissed or resolved one is decided.
STANDING = (Flag.Status.OPEN, Flag.Status.CONFIRMED)


def duplicate_of(submission: ModelSubmission, flag: dict[str, Any]) -> Flag | None:
    """The flag already raised for this finding, if any.

    A weights change is the same finding when the branch points at the same sha as one already
    reported, whatever maintainers decided about it (the periodic re-check sees it every time);
    any other kind is the same finding when a standing flag of that kind is on the same
    benchmark."""
    if flag["kind"] == Flag.Kind.WEIGHTS_CHANGED:
        current_sha = (flag.get("evidence") or {}).get("current_sha")
        return submission.flags.filter(kind=flag["kind"], evidence__current_sha=current_sha).first()
    return submission.flags.filter(
        kind=flag["kind"], benchmark=flag.get("benchmark") or "", status__in=STANDING
    ).first()


def do_raise_flag(submission: ModelSubmission, run: EvaluationRun | None, flag: dict[str, Any]) -> Flag:
    """Raise a report flag (kind, severity, benchmark, summary, evidence) on `submission`: a new
    Flag with its 'raised' event and, once the transaction commits, an e-mail to the author;
    or, for a finding already raised, a 'seen again' note on the existing flag."""
    if flag["kind"] not in Flag.Kind.values or flag["severity"] not in Flag.Severity.values:
        raise ValueError(f"not a flag: kind {flag['kind']!r}, severity {flag['severity']!r}")
    with transaction.atomic():
        existing = duplicate_of(submission, flag)
        if existing is not None:
            _note_seen_again(existing, run, flag)
            return existing
        created = Flag.objects.create(
            submission=submission,
            run=run,
            kind=flag["kind"],
            severity=flag["severity"],
            benchmark=flag.get("benchmark") or "",
            summary=flag["summary"],
            evidence=flag.get("evidence") or {},
        )
        FlagEvent.objects.create(
            flag=created,
            action=FlagEvent.Action.RAISED,
            to_status=created.status,
            message=flag["summary"],
            data={"kind": flag["kind"]},
        )
        # Mailed by a default-queue worker: the GPU workers hold no mail credentials.
        transaction.on_commit(lambda: send("verity.notify_flag", created.id), robust=True)
    return created


def _note_seen_again(existing: Flag, run: EvaluationRun | None, flag: dict[str, Any]) -> FlagEvent:
    return FlagEvent.objects.create(
        flag=existing,
        action=FlagEvent.Action.NOTE,
        from_status=existing.status,
        to_status=existing.status,
        message=f"seen again: {flag['summary']}",
        data={"run": run.id if run else None, "evidence": flag.get("evidence") or {}},
    )


def notify_flag_raised(flag_id: int) -> bool:
    """E-mail the author (the notify_flag task); a mail failure is logged, never retried into a
    second e-mail. A flag gone since is nothing to send."""
    flag = Flag.objects.filter(id=flag_id).select_related("submission").first()
    if flag is None:
        return False
    try:
        return bool(notifications.do_notify_flag_raised(flag))
    except Exception:
        log.exception("notifying the author of flag %s failed", flag_id)
        return False
