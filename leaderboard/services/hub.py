"""Reading small facts about a Hub repository at one commit for the site's checks (its size, a
small file such as the owner token or the model card), through the same huggingface_hub access
intake uses: `verification.intake`'s repo views, offline from the local HF cache, online from
`model_info`. Every read is capped in bytes before anything is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from verification.config import hub_offline
from verification.intake import (
    HubRepoView,
    IntakeRefused,
    LocalRepoView,
    RepoView,
    TransientHubError,
    resolve_in_cache,
)

@dataclass(frozen=True)
class RepoAtSha:
    """One repository at one commit: its files ({path: bytes}) and a view to read them."""

    repo_id: str
    sha: str
    files: dict[str, int]
    view: RepoView

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def read_small(self, name: str, max_bytes: int) -> str | None:
        """The file's text, or None when it is missing or larger than `max_bytes`."""
        size = self.files.get(name)
        if size is None or size > max_bytes:
            return None
        return self.view.read_text(name)


def repo_at(repo_id: str, revision: str) -> RepoAtSha:
    """The repository at `revision` (a branch, tag or sha). Raises IntakeRefused when it does not
    exist, TransientHubError when the Hub cannot be reached."""
    if hub_offline():
        sha, snapshot = resolve_in_cache(repo_id, revision)
        view = LocalRepoView(snapshot)
        return RepoAtSha(repo_id, sha, view.files(), view)
    return _repo_on_hub(repo_id, revision)


def _repo_on_hub(repo_id: str, revision: str) -> RepoAtSha:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(token=settings.HF_TOKEN or None)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except (GatedRepoError, RepositoryNotFoundError):
        raise IntakeRefused("not_found", f"repository {repo_id} not found (or not public) on the Hub") from None
    except RevisionNotFoundError:
        raise IntakeRefused("revision_not_found", f"revision {revision!r} of {repo_id} not found") from None
    except (HfHubHTTPError, OSError, TimeoutError) as exc:
        raise TransientHubError(f"the Hugging Face Hub did not answer for {repo_id} ({type(exc).__name__})") from None
    files = {sibling.rfilename: int(sibling.size or 0) for sibling in info.siblings or []}
    return RepoAtSha(repo_id, info.sha, files, HubRepoView(api, repo_id, info.sha, files, None))
