"""Watching a model: a signed-in user follows a repository (all its submissions) and is e-mailed
when one of them finishes or a flag is raised on it (leaderboard.services.notifications).

Watches are by repo id, not by submission: a model's later revisions and community verifications
are the same model to a reader. Only a model the site has a submission of can be watched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery

from leaderboard.models import LeaderboardEntry, ModelSubmission, Watch
from verification.claims import is_repo_id

# A user's list is short by nature; the cap keeps one page's query bounded whatever happens.
MAX_WATCHED_LISTED = 500


class WatchError(Exception):
    """A watch request that names no known model."""


def check_watchable(repo_id: Any) -> str:
    """`repo_id` when the site has a submission of it; WatchError otherwise."""
    if not isinstance(repo_id, str) or not is_repo_id(repo_id):
        raise WatchError("Not a model repo id.")
    if not ModelSubmission.objects.filter(repo_id=repo_id).exists():
        raise WatchError(f"No model {repo_id} on Verity.")
    return repo_id


def is_watching(user: Any, repo_id: str) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    return Watch.objects.filter(user=user, repo_id=repo_id).exists()


def do_toggle_watch(user: Any, repo_id: str) -> bool:
    """Watch the model if `user` does not yet, else stop watching; returns whether the user
    watches it now. Two toggles racing each other end in one state, never a duplicate row."""
    repo_id = check_watchable(repo_id)
    with transaction.atomic():
        deleted, _ = Watch.objects.filter(user=user, repo_id=repo_id).delete()
        if deleted:
            return False
        try:
            with transaction.atomic():
                Watch.objects.create(user=user, repo_id=repo_id)
        except IntegrityError:  # a concurrent toggle created it first: the user watches it
            pass
    return True


@dataclass(frozen=True)
class WatchedModel:
    repo_id: str
    since: datetime
    badge: str  # the model's leaderboard badge ("" when it has no row)
    url: str


def watched_models(user: Any) -> list[WatchedModel]:
    """The models `user` watches, newest watch first, with each one's current badge (one query)."""
    badge = LeaderboardEntry.objects.filter(repo_id=OuterRef("repo_id")).order_by("-updated_at").values("badge")[:1]
    rows = (Watch.objects.filter(user=user).annotate(badge=Subquery(badge))
            .values("repo_id", "created", "badge")[:MAX_WATCHED_LISTED])
    return [WatchedModel(repo_id=row["repo_id"], since=row["created"], badge=row["badge"] or "",
                         url=f"/models/{row['repo_id']}/") for row in rows]


def watcher_addresses(repo_id: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The e-mail addresses of the active users watching `repo_id` (each once, sorted), less
    `exclude` (the author, who gets their own e-mail)."""
    skip = {address.strip().lower() for address in exclude if address}
    addresses = (get_user_model().objects.filter(watches__repo_id=repo_id, is_active=True)
                 .exclude(email="").values_list("email", flat=True).distinct())
    unique = {address.strip().lower(): address.strip() for address in addresses}
    return sorted(address for key, address in unique.items() if key not in skip)
