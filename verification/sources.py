"""Resolve a model SOURCE to files on disk and a pinned commit.

A SOURCE is either a Hugging Face repo id (``org/name``, fetched through huggingface_hub, which
honours ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE``) or a local directory. Whatever it is, the run
record needs the exact weights that were measured, so a hub source is always pinned to the 40-hex
commit sha the revision pointed at when we fetched it, and every later load uses that sha.

Online: ``HfApi().model_info(repo, revision)`` gives the sha, then
``snapshot_download(repo, revision=sha, allow_patterns=...)`` fetches exactly that commit.
Offline: ``snapshot_download(..., local_files_only=True)`` resolves the revision from the local
cache (``refs/<branch>`` -> sha, or the sha itself) and never touches the network.

Intake guards (size limits, pickle refusal, licence checks) and the model cache are built on top
of this by the pipeline; this module only resolves and fetches.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verification.config import hub_cache_dir, hub_offline

# Files a measurement needs: config, tokenizer, weights in safetensors, chat templates, model
# card. Pickled weights (*.bin, *.pt) are deliberately absent: loading them runs arbitrary code.
DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "*.jinja",
    "*.md",
)

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class ResolveError(ValueError):
    """The source cannot be resolved: the message says why, in words a submitter understands."""


@dataclass(frozen=True)
class ResolvedSource:
    """Where the files are and which exact version they are."""

    source: str  # what the user gave
    repo_id: str | None  # None for a local directory outside any HF cache
    revision: str | None  # the revision asked for (branch, tag or sha); None = default branch
    sha: str  # 40 hex: the hub commit, or for a plain local directory a digest of its files
    sha_kind: str  # "commit" (hub / HF cache snapshot) or "content" (sha1 over local files)
    path: Path  # local directory holding config.json, tokenizer and weights

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def looks_like_local_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir()


def resolve(
    source: str,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    allow_patterns: tuple[str, ...] | list[str] | None = DEFAULT_ALLOW_PATTERNS,
    offline: bool | None = None,
    token: str | bool | None = None,
) -> ResolvedSource:
    """Resolve SOURCE (hub repo id or local directory) to a local path and a pinned sha."""
    source = (source or "").strip()
    if not source:
        raise ResolveError("empty model source: give a Hugging Face repo id (org/name) or a directory")
    if looks_like_local_path(source):
        if revision:
            raise ResolveError(f"--revision {revision!r} makes no sense for a local directory ({source})")
        return resolve_local_directory(Path(source).expanduser())
    return resolve_hub_repo(
        source,
        revision,
        cache_dir=hub_cache_dir(cache_dir),
        allow_patterns=allow_patterns,
        offline=hub_offline() if offline is None else offline,
        token=token,
    )


def validate_hub_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ResolveError(f"malformed Hugging Face repo id {repo_id!r}: {error}") from error
    if repo_id.count("/") != 1:
        # validate_repo_id accepts a bare name (legacy canonical models); submissions must say
        # whose model it is.
        raise ResolveError(f"malformed Hugging Face repo id {repo_id!r}: expected 'org/name'")


def resolve_hub_repo(
    repo_id: str,
    revision: str | None,
    *,
    cache_dir: Path,
    allow_patterns: tuple[str, ...] | list[str] | None,
    offline: bool,
    token: str | bool | None = None,
) -> ResolvedSource:
    validate_hub_repo_id(repo_id)
    if revision is not None and not revision.strip():
        raise ResolveError("empty --revision: give a branch, tag or 40-hex commit sha")
    patterns = list(allow_patterns) if allow_patterns else None
    if offline:
        sha, path = fetch_from_local_cache(repo_id, revision, cache_dir, patterns)
    else:
        sha = remote_commit_sha(repo_id, revision, token)
        path = download_snapshot(repo_id, sha, cache_dir, patterns, token)
    if not COMMIT_SHA.match(sha):
        raise ResolveError(f"{repo_id}@{revision or 'main'} resolved to {sha!r}, not a 40-hex commit sha")
    return ResolvedSource(
        source=repo_id, repo_id=repo_id, revision=revision, sha=sha, sha_kind="commit", path=path
    )


def remote_commit_sha(repo_id: str, revision: str | None, token: str | bool | None) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        info = HfApi(token=token).model_info(repo_id, revision=revision)
    except GatedRepoError as error:
        raise ResolveError(f"{repo_id} is gated: accept its licence on the Hub and provide a token") from error
    except RepositoryNotFoundError as error:
        raise ResolveError(f"model repository {repo_id} not found on the Hugging Face Hub (or private)") from error
    except RevisionNotFoundError as error:
        raise ResolveError(f"revision {revision!r} not found in {repo_id}") from error
    except HfHubHTTPError as error:
        raise ResolveError(f"the Hub refused {repo_id}@{revision or 'main'}: {error}") from error
    except OSError as error:  # connection errors
        raise ResolveError(f"cannot reach the Hugging Face Hub for {repo_id}: {error}") from error
    if not info.sha:
        raise ResolveError(f"the Hub gave no commit sha for {repo_id}@{revision or 'main'}")
    return info.sha


def download_snapshot(
    repo_id: str,
    sha: str,
    cache_dir: Path,
    allow_patterns: list[str] | None,
    token: str | bool | None,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        path = snapshot_download(
            repo_id, revision=sha, cache_dir=cache_dir, allow_patterns=allow_patterns, token=token
        )
    except HfHubHTTPError as error:
        raise ResolveError(f"download of {repo_id}@{sha} failed: {error}") from error
    except OSError as error:
        raise ResolveError(f"download of {repo_id}@{sha} failed: {error}") from error
    return Path(path)


def fetch_from_local_cache(
    repo_id: str, revision: str | None, cache_dir: Path, allow_patterns: list[str] | None
) -> tuple[str, Path]:
    """Offline: the revision must already be in the cache (refs/<branch> -> sha, or a sha)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.file_download import repo_folder_name

    repo_folder = cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")
    if not repo_folder.is_dir():
        raise ResolveError(
            f"model repository {repo_id} is not in the local Hugging Face cache ({cache_dir}) "
            "and the Hub is offline (HF_HUB_OFFLINE)"
        )
    try:
        path = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=allow_patterns,
                local_files_only=True,
            )
        )
    except (EntryNotFoundError, FileNotFoundError) as error:
        known = sorted(p.name for p in (repo_folder / "refs").glob("*")) if (repo_folder / "refs").is_dir() else []
        raise ResolveError(
            f"revision {revision or 'main'!r} of {repo_id} is not in the local cache "
            f"(known refs: {', '.join(known) or 'none'}) and the Hub is offline"
        ) from error
    return path.name, path


def resolve_local_directory(path: Path) -> ResolvedSource:
    if not path.exists():
        raise ResolveError(f"local model directory {path} does not exist")
    if not path.is_dir():
        raise ResolveError(f"{path} is not a directory")
    path = path.resolve()
    if not (path / "config.json").is_file():
        raise ResolveError(f"{path} has no config.json: not a Hugging Face model directory")
    cached = repo_and_sha_from_cache_layout(path)
    if cached is not None:
        repo_id, sha = cached
        return ResolvedSource(
            source=str(path), repo_id=repo_id, revision=sha, sha=sha, sha_kind="commit", path=path
        )
    return ResolvedSource(
        source=str(path), repo_id=None, revision=None, sha=directory_digest(path), sha_kind="content", path=path
    )


def repo_and_sha_from_cache_layout(path: Path) -> tuple[str, str] | None:
    """`.../models--org--name/snapshots/<sha>` names its repo and commit."""
    if not COMMIT_SHA.match(path.name) or path.parent.name != "snapshots":
        return None
    folder = path.parent.parent.name
    if not folder.startswith("models--"):
        return None
    parts = folder[len("models--") :].split("--")
    return "/".join(parts), path.name


def directory_digest(path: Path) -> str:
    """sha1 over (relative path, content) of every file, so a local directory still gets a
    40-hex identity that changes when any byte of it does."""
    digest = hashlib.sha1()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
