"""Who controls a Hub repository, as far as Verity can tell.

An author submission needs proof that the submitter controls the repo, one of:

- the Hugging Face account they signed in with (OAuth, keyed on the Hub's stable `sub`) is the
  repo's namespace, or a member of the organisation that owns it (the userinfo's `orgs`, refreshed
  at every sign-in; a read-only member does not count: they cannot push to the repo);
- the repo holds, at the pinned commit, the file `.verity/owner-token` whose content is the
  submitter's owner token (shown on /accounts/owner-token/): only someone who can push to the repo
  can put it there. This is how API and password accounts prove control.

Anyone may instead request a community verification, which needs no proof and is shown apart.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import IntegrityError, transaction

from leaderboard.models import HubIdentity, ModelSubmission, OwnerToken
from leaderboard.services.hub import RepoAtSha

OWNER_TOKEN_FILE = ".verity/owner-token"
MAX_OWNER_TOKEN_BYTES = 1024
OWNER_TOKEN_PREFIX = "verity-owner-"
# Roles in a Hub organisation that cannot write to its repos.
READ_ONLY_ROLES = frozenset({"read"})


def owner_token_for(user: Any) -> str:
    """The user's owner token, created on first use."""
    existing = OwnerToken.objects.filter(user=user).values_list("token", flat=True).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return OwnerToken.objects.create(user=user, token=OWNER_TOKEN_PREFIX + secrets.token_urlsafe(24)).token
    except IntegrityError:  # created meanwhile by a concurrent request of the same user
        return OwnerToken.objects.get(user=user).token


def hub_namespaces(user: Any) -> set[str]:
    """Namespaces (lower-case) whose repos the user's Hugging Face account can write to: its own
    username and its organisations, as of its last sign-in."""
    if not getattr(user, "is_authenticated", False):
        return set()
    identity = HubIdentity.objects.filter(user=user).first()
    if identity is None:
        return set()
    names = {identity.username.lower()}
    for org in identity.orgs or []:
        if isinstance(org, dict) and org.get("name") and org.get("role") not in READ_ONLY_ROLES:
            names.add(str(org["name"]).lower())
    return names


def namespace_of(repo_id: str) -> str:
    return repo_id.split("/", 1)[0]


def ownership_proof(user: Any, repo: RepoAtSha) -> dict[str, Any] | None:
    """How `user` proves control of `repo` (stored on the submission), or None when they cannot."""
    namespace = namespace_of(repo.repo_id)
    if namespace.lower() in hub_namespaces(user):
        return {"method": "hf_account", "namespace": namespace, "hub_username": user.hub_identity.username}
    committed = repo.read_small(OWNER_TOKEN_FILE, MAX_OWNER_TOKEN_BYTES)
    if committed is not None and secrets.compare_digest(committed.strip(), owner_token_for(user)):
        return {"method": "repo_token", "file": OWNER_TOKEN_FILE, "sha": repo.sha}
    return None


def is_repo_owner(user: Any, repo_id: str) -> bool:
    """Whether `user` has shown control of the repo: its Hub account owns the namespace, or one of
    its author submissions of the repo passed the ownership check."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if namespace_of(repo_id).lower() in hub_namespaces(user):
        return True
    return ModelSubmission.objects.filter(
        repo_id=repo_id, kind=ModelSubmission.Kind.AUTHOR, submitter=user
    ).exclude(owner_proof={}).exists()
