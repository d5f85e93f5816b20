"""Atom feeds of flags as the public sees them: each entry is a flag raised or decided (confirmed,
dismissed, resolved, reopened), site-wide (/feeds/flags.atom) or for one model
(/models/<org>/<name>/flags.atom).

Only what the model page shows goes in: the flag's kind, severity, benchmark, summary and public
state, and a decision's public reason. Never the evidence (it can name private held-out items),
never maintainers' notes or replies, never a flag the page hides (a dismissed info-level one),
never a flag of a refused or withdrawn submission. Text passes through scrub_internal like every
other public text.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.feedgenerator import Atom1Feed

from leaderboard import selectors
from leaderboard.models import Flag, FlagEvent, ModelSubmission
from leaderboard.services.public_text import scrub_internal
from leaderboard.services.triage import PUBLIC_LABELS

FEED_LENGTH = 50
# The flag events a reader follows: a flag appearing and maintainers deciding it.
FEED_ACTIONS = (
    FlagEvent.Action.RAISED,
    FlagEvent.Action.CONFIRMED,
    FlagEvent.Action.DISMISSED,
    FlagEvent.Action.RESOLVED,
    FlagEvent.Action.REOPENED,
)
# Decisions whose reason the model page shows (a reopened flag has no public reason).
PUBLIC_REASON_ACTIONS = (FlagEvent.Action.CONFIRMED, FlagEvent.Action.DISMISSED, FlagEvent.Action.RESOLVED)
# The model page's rule (services.triage.public_flag): a dismissed info-level flag is not shown.
HIDDEN_FLAGS = Q(flag__status=Flag.Status.DISMISSED, flag__severity=Flag.Severity.INFO)


def public_flag_events(repo_id: str | None = None) -> QuerySet:
    """The newest public flag events (of one model when `repo_id` is given), flag and submission
    loaded."""
    events = (
        FlagEvent.objects.filter(action__in=FEED_ACTIONS)
        .exclude(HIDDEN_FLAGS)
        .exclude(flag__submission__status=ModelSubmission.Status.REJECTED)
        .select_related("flag__submission")
    )
    if repo_id is not None:
        events = events.filter(flag__submission__repo_id=repo_id)
    return events.order_by("-at", "-id")[:FEED_LENGTH]


def stable_id(path: str) -> str:
    """A permanent, unique Atom id (RFC 4287 4.2.6) for one of the site's things: a name-based
    UUID of the deployment's address (settings.SITE_URL) and the thing's path, the same in every
    request whatever host name the reader used."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, (settings.SITE_URL.rstrip('/') or 'verity') + path)}"


class FlagFeed(Feed):
    """Every model's flags, newest event first."""

    feed_type = Atom1Feed
    title = "Verity: new and decided flags"
    subtitle = "Flags raised by Verity's checks on re-measured models, and maintainers' decisions on them."
    link = "/"
    author_name = "Verity"

    def feed_guid(self, obj: Any) -> str:
        return stable_id("/feeds/flags.atom")

    def items(self, obj: Any = None) -> QuerySet:
        return public_flag_events()

    def item_title(self, event: FlagEvent) -> str:
        flag = event.flag
        what = "flag raised" if event.action == FlagEvent.Action.RAISED else f"flag {event.action}"
        on = f" on {flag.benchmark}" if flag.benchmark else ""
        return f"{flag.submission.repo_id}: {flag.get_kind_display()} {what} ({flag.severity}{on})"

    def item_description(self, event: FlagEvent) -> str:
        flag = event.flag
        state = PUBLIC_LABELS.get(event.to_status, event.to_status) if event.to_status else ""
        lines = [f"State: {state}." if state else "", scrub_internal(flag.summary)]
        if event.action in PUBLIC_REASON_ACTIONS and event.message:
            lines.append(f"Reason: {scrub_internal(event.message)}")
        return "\n".join(line for line in lines if line)

    def item_link(self, event: FlagEvent) -> str:
        submission = event.flag.submission
        return f"/models/{submission.repo_id}/?submission={submission.pk}#flags"

    def item_guid(self, event: FlagEvent) -> str:
        return stable_id(f"/flag-events/{event.pk}")

    item_guid_is_permalink = False

    def item_pubdate(self, event: FlagEvent) -> Any:
        return event.at

    def item_updateddate(self, event: FlagEvent) -> Any:
        return event.at

    def item_categories(self, event: FlagEvent) -> tuple[str, ...]:
        return (event.flag.kind, event.flag.severity)


class ModelFlagFeed(FlagFeed):
    """One model's flags (every submission of the repository), newest event first."""

    def get_object(self, request: HttpRequest, org: str, name: str) -> str:
        return selectors.model_submission(f"{org}/{name}").repo_id  # 404 for a model not on Verity

    def title(self, repo_id: str) -> str:
        return f"Verity: flags on {repo_id}"

    def subtitle(self, repo_id: str) -> str:
        return f"Flags raised by Verity's checks on {repo_id}, and maintainers' decisions on them."

    def link(self, repo_id: str) -> str:
        return f"/models/{repo_id}/"

    def feed_guid(self, repo_id: str) -> str:
        return stable_id(f"/models/{repo_id}/flags.atom")

    def items(self, repo_id: str) -> QuerySet:
        return public_flag_events(repo_id)
