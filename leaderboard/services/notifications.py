"""E-mail to the people a flag concerns, through Django's e-mail backend (settings.EMAIL_BACKEND).

Authors are told when a flag is raised on their submission and when maintainers decide it, so
they can answer before (and after) the public reads the decision. A failed e-mail is logged and
never undoes the decision: triage calls these after its transaction commits.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from leaderboard.models import Flag, FlagEvent

log = logging.getLogger(__name__)


def flag_thread_url(flag: Flag) -> str:
    """Where the author reads the flag and replies (absolute when settings.SITE_URL is set)."""
    return settings.SITE_URL.rstrip("/") + reverse("flag_reply", kwargs={"flag_id": flag.pk})


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


def _flag_lines(flag: Flag) -> list[str]:
    lines = [
        f"Model: {flag.submission}",
        f"Flag: {flag.get_kind_display()} ({flag.severity})" + (f" on {flag.benchmark}" if flag.benchmark else ""),
        f"Summary: {flag.summary}",
    ]
    return lines


def do_notify_flag_raised(flag: Flag) -> bool:
    """Tell the submission's author that a flag was raised (the pipeline calls this once the
    flag row is committed). Returns whether an e-mail was sent."""
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
    return _send(f"[Verity] Flag raised on {flag.submission.repo_id}: {flag.kind}", body, [_author_address(flag)])


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
