"""E-mail to the people a submission or a flag concerns, through Django's e-mail backend
(settings.EMAIL_BACKEND).

Authors are told when a flag is raised on their submission and when maintainers decide it, so
they can answer before (and after) the public reads the decision, and when their submission
finishes (verified, flagged, incomplete or failed). Users watching the model
(leaderboard.services.watch) get the finish e-mail and the raised flag too, in words for a
reader: only what the model page shows. A failed e-mail is logged and never undoes the decision:
these run after the transaction that made the change commits (the finish and raised-flag
e-mails from a default-queue worker).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from leaderboard.models import Flag, FlagEvent, ModelSubmission
from leaderboard.services.public_text import scrub_internal
from leaderboard.services.watch import watcher_addresses
from workers.celery_app import send

log = logging.getLogger(__name__)


def flag_thread_url(flag: Flag) -> str:
    """Where the author reads the flag and replies (absolute when settings.SITE_URL is set)."""
    return settings.SITE_URL.rstrip("/") + reverse("flag_reply", kwargs={"flag_id": flag.pk})


def model_page_url(submission: ModelSubmission) -> str:
    """The submission's model page (absolute when settings.SITE_URL is set)."""
    org, name = submission.repo_id.split("/", 1)
    path = reverse("model", kwargs={"org": org, "name": name})
    return f"{settings.SITE_URL.rstrip('/')}{path}?submission={submission.pk}"


def watched_list_url() -> str:
    return settings.SITE_URL.rstrip("/") + reverse("watched_models")


def _author_address(flag: Flag) -> str:
    submitter = flag.submission.submitter
    return (submitter.email or "").strip() if submitter is not None else ""


def _send(subject: str, body: str, recipients: list[str]) -> bool:
    recipients = [address for address in recipients if address]
    if not recipients:
        return False
    try:
        sent = send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except Exception:  # the mail server's failure must not undo a triage decision
        log.exception("could not send %r to %s", subject, recipients)
        return False
    return sent > 0


def _send_each(subject: str, body: str, recipients: list[str]) -> int:
    """One e-mail per recipient: watchers never see each other's addresses. Returns how many
    were sent."""
    return sum(int(_send(subject, body, [address])) for address in recipients)


def _flag_lines(flag: Flag) -> list[str]:
    lines = [
        f"Model: {flag.submission}",
        f"Flag: {flag.get_kind_display()} ({flag.severity})" + (f" on {flag.benchmark}" if flag.benchmark else ""),
        f"Summary: {flag.summary}",
    ]
    return lines


def do_notify_flag_raised(flag: Flag) -> bool:
    """Tell the submission's author, and the model's watchers, that a flag was raised (the
    pipeline calls this once the flag row is committed). Returns whether an e-mail was sent."""
    body = "\n".join(
        [
            "Verity's checks raised a flag on your submission. It is shown publicly as",
            '"under review" until a maintainer decides it; you can answer on the flag\'s page.',
            "",
            *_flag_lines(flag),
            "",
            f"Read and reply: {flag_thread_url(flag)}",
        ]
    )
    author = _author_address(flag)
    sent = _send(f"[Verity] Flag raised on {flag.submission.repo_id}: {flag.kind}", body, [author])
    return _notify_watchers_of_flag(flag, author) or sent


def _publicly_shown(flag: Flag) -> bool:
    """The model page's rule (triage.public_flag): a dismissed info-level flag is not shown."""
    return not (flag.status == Flag.Status.DISMISSED and flag.severity == Flag.Severity.INFO)


def _notify_watchers_of_flag(flag: Flag, author: str) -> bool:
    """The model's watchers (less its author) hear of a raised flag, as the public sees it."""
    watchers = watcher_addresses(flag.submission.repo_id, exclude=(author,)) if _publicly_shown(flag) else []
    if not watchers:
        return False
    body = "\n".join([
        f"A flag was raised on {flag.submission.repo_id}, a model you watch on Verity. It is shown as",
        '"under review" until a maintainer decides it.',
        "",
        *(scrub_internal(line) for line in _flag_lines(flag)),
        "",
        f"Model page: {model_page_url(flag.submission)}",
        f"Stop watching: {watched_list_url()}",
    ])
    return _send_each(f"[Verity] Flag raised on {flag.submission.repo_id}: {flag.kind}", body, watchers) > 0


def do_notify_flag_decided(flag: Flag, event: FlagEvent) -> bool:
    """Tell the author that maintainers changed the flag's state (confirmed, dismissed,
    resolved or reopened), with the reason they gave."""
    actor = event.actor.get_username() if event.actor_id else "Verity"
    body = "\n".join(
        [
            f"A maintainer ({actor}) changed the state of a flag on your submission:",
            f"{event.from_status or '-'} -> {event.to_status}",
            *( [f"Reason: {event.message}"] if event.message else [] ),
            "",
            *_flag_lines(flag),
            "",
            f"Read and reply: {flag_thread_url(flag)}",
        ]
    )
    subject = f"[Verity] Flag on {flag.submission.repo_id} {event.to_status}: {flag.kind}"
    return _send(subject, body, [_author_address(flag)])


def do_notify_reply(flag: Flag, event: FlagEvent) -> bool:
    """A reply goes to the other side: an author's reply to the flag's assignee (if any), a
    maintainer's reply to the author."""
    if event.data.get("role") == "author":
        assignee = flag.assignee
        recipients = [assignee.email] if assignee is not None and assignee.email else []
    else:
        recipients = [_author_address(flag)]
    actor = event.actor.get_username() if event.actor_id else "someone"
    body = "\n".join([f"{actor} replied on a flag:", "", event.message, "", *_flag_lines(flag), "",
                      f"Thread: {flag_thread_url(flag)}"])
    return _send(f"[Verity] Reply on flag {flag.pk} ({flag.submission.repo_id})", body, recipients)


# --- a submission finished ------------------------------------------------------------------------

FINISHED_STATUSES = (
    ModelSubmission.Status.VERIFIED,
    ModelSubmission.Status.FLAGGED,
    ModelSubmission.Status.INCOMPLETE,
    ModelSubmission.Status.FAILED,
)
OUTCOME_WORDS = {
    ModelSubmission.Status.VERIFIED: "verified: every check ran and raised no flag",
    ModelSubmission.Status.FLAGGED: "flagged: a check found something a maintainer will review",
    ModelSubmission.Status.INCOMPLETE: "incomplete: no flag, but a check that applies could not run, so it is not "
                                       "shown as verified",
    ModelSubmission.Status.FAILED: "failed: the measurement could not be completed",
}
# One finish e-mail per submission and outcome, even when the task is delivered twice.
FINISH_MAIL_TTL_S = 7 * 24 * 3600


def announce_finish(submission_id: int) -> None:
    """Once the transaction that set the submission's final status commits, send the finish
    e-mail task (a broker that is down is logged, never undoes the result)."""
    transaction.on_commit(lambda: send("verity.notify_finished", submission_id), robust=True)


def _finish_lines(submission: ModelSubmission) -> list[str]:
    lines = [f"Model: {submission}", f"Result: {OUTCOME_WORDS[submission.status]}"]
    if submission.status == ModelSubmission.Status.FAILED and submission.rejection_reason:
        lines.append(f"Reason: {scrub_internal(submission.rejection_reason)}")
    flags = [flag for flag in submission.flags.order_by("created_at", "id") if _publicly_shown(flag)]
    lines += [f"Flag: {flag.get_kind_display()} ({flag.severity})" + (f" on {flag.benchmark}" if flag.benchmark else "")
              + f": {scrub_internal(flag.summary)}" for flag in flags]
    run_url = settings.SITE_URL.rstrip("/") + reverse("submission_status", args=[submission.pk])
    return [*lines, "", f"Model page: {model_page_url(submission)}", f"Run record: {run_url}"]


def do_notify_submission_finished(submission: ModelSubmission) -> int:
    """E-mail the author, and the model's watchers, that the submission finished; returns the
    number of e-mails sent (0 when it has not finished or was already announced)."""
    if submission.status not in FINISHED_STATUSES:
        return 0
    finished = submission.finished_at.isoformat() if submission.finished_at else ""
    key = f"finish-mail:{submission.pk}:{submission.status}:{finished}"
    if not cache.add(key, 1, FINISH_MAIL_TTL_S):
        return 0
    lines = _finish_lines(submission)
    subject = f"[Verity] {submission.repo_id} finished: {submission.status}"
    author = (submission.submitter.email or "").strip() if submission.submitter is not None else ""
    sent = int(_send(subject, "\n".join(["Verity finished checking your submission.", "", *lines]), [author]))
    watchers = watcher_addresses(submission.repo_id, exclude=(author,))
    body = "\n".join([f"A submission of {submission.repo_id}, a model you watch on Verity, finished.", "", *lines,
                      f"Stop watching: {watched_list_url()}"])
    return sent + _send_each(subject, body, watchers)


def notify_submission_finished(submission_id: int) -> int:
    """The notify_finished task: a submission gone since is nothing to send; a failure is
    logged, never retried into a second e-mail."""
    submission = ModelSubmission.objects.filter(id=submission_id).select_related("submitter").first()
    if submission is None:
        return 0
    try:
        return do_notify_submission_finished(submission)
    except Exception:
        log.exception("announcing the end of submission %s failed", submission_id)
        return 0
