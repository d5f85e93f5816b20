"""Intake: pin a model source to a commit and decide, from metadata alone, whether Verity will
touch it.

Nothing here downloads weights or executes anything from the repository: files are listed, small
JSON/Markdown files are read as text, and safetensors *headers* (8-byte length + JSON) give
dtypes and sizes. A repository is refused when its weights are not in safetensors (pickle formats
run code when loaded; Verity never unpickles), when loading it would need trust_remote_code
(auto_map or custom .py files), or when it is larger than the configured cap. A missing license
or model card does not refuse; it is recorded and shown (methods §4, hygiene facts).

Hub repos are read through huggingface_hub (HfApi.model_info, get_safetensors_metadata); with
HF_HUB_OFFLINE=1 the local HF cache (HF_HUB_CACHE) stands in for the Hub. A local directory is
taken as is, with no commit sha.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from verification.claims import is_repo_id
from verification.sources import (
    ResolveError,
    fetch_from_local_cache,
    hub_cache_dir,
    hub_offline,
    looks_like_local_path,
    validate_hub_repo_id,
)

# Files Verity downloads for a model: weights in safetensors, configs and tokenizer data.
# Everything else (pickles, code, images, optimizer states) is never fetched.
DOWNLOAD_PATTERNS = (
    "*.safetensors",
    "*.json",
    "tokenizer.model",
    "*.tiktoken",
    "*.txt",
    "*.jinja",
    "README.md",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
CODE_SUFFIXES = (".py",)
SAFETENSORS_HEADER_LIMIT = 100 * 1024**2  # a header larger than this is hostile, not a model
# Small text files read during intake (configs, card); bigger ones are not metadata.
TEXT_FILE_LIMIT = 5 * 1024**2


class IntakeRefused(Exception):
    """The model is not accepted; `reason` is shown to the submitter, `code` is machine-readable."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TransientHubError(Exception):
    """The Hub could not be reached (timeout, connection error, 5xx): try again later."""


@dataclass
class IntakeResult:
    source: str
    kind: str  # "hub" or "local"
    repo_id: str | None
    requested_revision: str | None
    sha: str | None
    local_path: str | None  # set for local directories and offline cache snapshots
    files: dict[str, int]  # every file in the repo at that sha -> size in bytes
    download_files: list[str]
    format: str
    dtype: str | None
    dtypes: dict[str, int]  # dtype -> parameter count
    shards: int
    bytes: int  # total size of the weight files
    parameters: int
    license: str | None
    card: bool
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def hygiene(self) -> dict[str, Any]:
        """The report's `intake` section."""
        return {
            "format": self.format,
            "dtype": self.dtype,
            "dtypes": self.dtypes,
            "shards": self.shards,
            "bytes": self.bytes,
            "parameters": self.parameters,
            "license": self.license,
            "card": self.card,
            "notes": list(self.notes),
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RepoView(Protocol):
    """Metadata access to one repository at one commit."""

    def files(self) -> dict[str, int]: ...

    def read_text(self, name: str) -> str | None: ...

    def safetensors_header(self, name: str) -> dict[str, Any]: ...


# --- source resolution -------------------------------------------------------------------------


def inspect_source(source: str, revision: str | None = None, max_bytes: int | None = None) -> IntakeResult:
    """Pin `source` (HF repo id or local directory) and run the intake guards. Raises IntakeRefused."""
    if not isinstance(source, str) or not source.strip():
        raise IntakeRefused("malformed_source", "no model source given (expected 'org/name' or a directory)")
    source = source.strip()
    if looks_like_local_path(source):
        if revision:
            raise IntakeRefused(
                "bad_revision", f"a revision ({revision!r}) makes no sense for a local directory ({source})"
            )
        path = Path(source).expanduser().resolve()
        if not path.is_dir():
            raise IntakeRefused("not_found", f"local model directory {source} does not exist")
        view: RepoView = LocalRepoView(path)
        return _evaluate(source, "local", None, None, None, str(path), view, max_bytes)
    try:
        validate_hub_repo_id(source)
    except ResolveError as exc:
        raise IntakeRefused("malformed_repo_id", str(exc)) from None
    if not is_repo_id(source):
        raise IntakeRefused(
            "malformed_repo_id", f"malformed Hugging Face repo id {source!r}: expected 'org/name'"
        )
    wanted = revision or "main"
    if hub_offline():
        sha, snapshot = resolve_in_cache(source, wanted)
        return _evaluate(
            source, "hub", source, wanted, sha, str(snapshot), LocalRepoView(snapshot), max_bytes
        )
    sha, hub_view = _resolve_on_hub(source, wanted)
    return _evaluate(source, "hub", source, wanted, sha, None, hub_view, max_bytes)


def resolve_in_cache(repo_id: str, revision: str) -> tuple[str, Path]:
    """Offline pinning through the local HF cache (refs/<revision> -> sha); reads no weights."""
    try:
        return fetch_from_local_cache(repo_id, revision, hub_cache_dir(), None)
    except ResolveError as exc:
        repo_folder = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"
        code = "revision_not_found" if repo_folder.is_dir() else "not_found"
        raise IntakeRefused(code, str(exc)) from None


def resolve_revision(repo_id: str, revision: str | None = "main") -> str:
    """The commit sha a branch/tag points at now (None: the repo's default branch; used to
    re-check verified repos). Offline the default branch is refs/main in the HF cache."""
    if hub_offline():
        return resolve_in_cache(repo_id, revision or "main")[0]
    return _resolve_on_hub(repo_id, revision)[0]


def _resolve_on_hub(repo_id: str, revision: str | None) -> tuple[str, "HubRepoView"]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(token=os.environ.get("HF_TOKEN") or None)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except HFValidationError as exc:
        raise IntakeRefused("malformed_repo_id", f"{repo_id!r} is not a valid repo id: {exc}") from None
    except GatedRepoError:
        raise IntakeRefused(
            "gated", f"repository {repo_id} is gated; Verity verifies public models only"
        ) from None
    except RepositoryNotFoundError:
        raise IntakeRefused("not_found", f"repository {repo_id} not found on the Hugging Face Hub") from None
    except RevisionNotFoundError:
        raise IntakeRefused("revision_not_found", f"revision {revision!r} of {repo_id} not found") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None and status < 500 and status != 429:
            raise IntakeRefused(
                "hub_error", f"the Hub refused the lookup of {repo_id}: HTTP {status}"
            ) from None
        raise TransientHubError(f"Hub error for {repo_id}: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise TransientHubError(f"cannot reach the Hub for {repo_id}: {exc}") from exc
    except Exception as exc:  # httpx timeouts/connection errors have no common base we can import cheaply
        if "Timeout" in type(exc).__name__ or "Connect" in type(exc).__name__:
            raise TransientHubError(f"cannot reach the Hub for {repo_id}: {exc}") from exc
        raise
    sha = info.sha
    files = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])}
    card_license = getattr(getattr(info, "card_data", None), "license", None)
    return sha, HubRepoView(api, repo_id, sha, files, card_license)


# --- repo views ----------------------------------------------------------------------------------


class LocalRepoView:
    """A directory on disk: a local model folder or an HF cache snapshot (symlinks to blobs)."""

    def __init__(self, root: Path):
        self.root = root

    def files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root).as_posix()
            if relative.startswith(".cache/") or relative.startswith(".git/"):
                continue
            if path.is_file():
                found[relative] = path.stat().st_size  # follows the cache's blob symlinks
        return found

    def read_text(self, name: str) -> str | None:
        path = self.root / name
        if not path.is_file() or path.stat().st_size > TEXT_FILE_LIMIT:
            return None
        return path.read_text(encoding="utf-8", errors="replace")

    def safetensors_header(self, name: str) -> dict[str, Any]:
        path = self.root / name
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ValueError("file shorter than a safetensors header")
            (length,) = struct.unpack("<Q", prefix)
            if length > SAFETENSORS_HEADER_LIMIT or length + 8 > size:
                raise ValueError(f"header length {length} does not fit the file ({size} bytes)")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        return {key: value for key, value in header.items() if key != "__metadata__"}


class HubRepoView:
    """One Hub repo at one sha: file list from model_info, headers by range request."""

    def __init__(self, api: Any, repo_id: str, sha: str, files: dict[str, int], card_license: str | None):
        self.api = api
        self.repo_id = repo_id
        self.sha = sha
        self._files = files
        self.card_license = card_license
        self._headers: dict[str, dict[str, Any]] | None = None

    def files(self) -> dict[str, int]:
        return dict(self._files)

    def read_text(self, name: str) -> str | None:
        from huggingface_hub import hf_hub_download

        if name not in self._files or self._files[name] > TEXT_FILE_LIMIT:
            return None
        path = hf_hub_download(self.repo_id, name, revision=self.sha)
        return Path(path).read_text(encoding="utf-8", errors="replace")

    def safetensors_header(self, name: str) -> dict[str, Any]:
        if self._headers is None:
            meta = self.api.get_safetensors_metadata(self.repo_id, revision=self.sha)
            self._headers = {
                filename: {
                    tensor: {
                        "dtype": info.dtype,
                        "shape": list(info.shape),
                        "data_offsets": list(info.data_offsets),
                    }
                    for tensor, info in file_meta.tensors.items()
                }
                for filename, file_meta in meta.files_metadata.items()
            }
        if name not in self._headers:
            raise ValueError(f"no safetensors metadata for {name}")
        return self._headers[name]


# --- the guards ------------------------------------------------------------------------------------


def _evaluate(
    source: str,
    kind: str,
    repo_id: str | None,
    revision: str | None,
    sha: str | None,
    local_path: str | None,
    view: RepoView,
    max_bytes: int | None,
) -> IntakeResult:
    files = view.files()
    if not files:
        raise IntakeRefused("empty", f"{source} has no files")
    _refuse_remote_code(files, view)
    weights = _weight_files(files)
    pickles = sorted(name for name in files if name.lower().endswith(PICKLE_SUFFIXES))
    if not weights:
        if pickles:
            raise IntakeRefused(
                "pickle_weights",
                f"weights are only in pickle format ({', '.join(pickles[:5])}); Verity loads safetensors only "
                "and never unpickles model files",
            )
        raise IntakeRefused("no_weights", f"{source} has no safetensors weight files")
    config = _read_json(view, "config.json")
    if config is None:
        raise IntakeRefused("no_config", f"{source} has no readable config.json")
    if "auto_map" in config:
        raise IntakeRefused(
            "trust_remote_code",
            "config.json has auto_map: loading it needs trust_remote_code (custom code), which Verity never runs",
        )
    download = sorted(name for name in files if _wanted(name))
    download_bytes = sum(files[name] for name in download)
    if max_bytes is not None and download_bytes > max_bytes:
        raise IntakeRefused(
            "too_large",
            f"model is {_human(download_bytes)}, over this instance's limit of {_human(max_bytes)} (MAX_MODEL_BYTES)",
        )
    dtypes = _dtype_counts(view, weights)
    card_text = view.read_text("README.md") if "README.md" in files else None
    license_name = _license(view, card_text, files)
    notes: list[str] = []
    if pickles:
        notes.append(f"pickle files present and ignored (never downloaded): {', '.join(pickles[:5])}")
    if card_text is None:
        notes.append("no model card (README.md)")
    if not license_name:
        notes.append("no license declared")
    return IntakeResult(
        source=source,
        kind=kind,
        repo_id=repo_id,
        requested_revision=revision,
        sha=sha,
        local_path=local_path,
        files=files,
        download_files=download,
        format="safetensors",
        dtype=max(dtypes, key=dtypes.get) if dtypes else None,
        dtypes=dtypes,
        shards=len(weights),
        bytes=sum(files[name] for name in weights),
        parameters=sum(dtypes.values()),
        license=license_name,
        card=card_text is not None,
        config=config,
        notes=notes,
    )


def _refuse_remote_code(files: dict[str, int], view: RepoView) -> None:
    code = sorted(name for name in files if name.lower().endswith(CODE_SUFFIXES))
    if code:
        raise IntakeRefused(
            "trust_remote_code",
            f"repository ships custom code ({', '.join(code[:5])}); loading it would need trust_remote_code, "
            "which Verity never runs",
        )
    for name in ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json"):
        data = _read_json(view, name) if name in files else None
        if data and "auto_map" in data:
            raise IntakeRefused(
                "trust_remote_code",
                f"{name} has auto_map: it needs trust_remote_code, which Verity never runs",
            )


def _weight_files(files: dict[str, int]) -> list[str]:
    # Adapter-only repos and nested folders (e.g. original/) are not the model's weights.
    return sorted(name for name in files if name.endswith(".safetensors") and "/" not in name)


def _wanted(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    if "/" in name and name.endswith(".safetensors"):
        return False  # nested copies (original/, checkpoints/) are not what transformers loads
    return any(fnmatch.fnmatch(base, pattern) for pattern in DOWNLOAD_PATTERNS)


def download_patterns(result: IntakeResult) -> list[str]:
    """Exact allow-patterns for snapshot_download: only the files intake accepted."""
    return list(result.download_files)


def _dtype_counts(view: RepoView, weights: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in weights:
        try:
            header = view.safetensors_header(name)
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise IntakeRefused("bad_safetensors", f"{name}: unreadable safetensors header ({exc})") from None
        for tensor, info in header.items():
            if not isinstance(info, dict) or "dtype" not in info or not isinstance(info.get("shape"), list):
                raise IntakeRefused("bad_safetensors", f"{name}: tensor {tensor!r} has no dtype/shape")
            count = 1
            for dim in info["shape"]:
                if not isinstance(dim, int) or dim < 0:
                    raise IntakeRefused("bad_safetensors", f"{name}: tensor {tensor!r} has a bad shape")
                count *= dim
            counts[str(info["dtype"])] = counts.get(str(info["dtype"]), 0) + count
    return counts


def _license(view: RepoView, card_text: str | None, files: dict[str, int]) -> str | None:
    card_license = getattr(view, "card_license", None)
    if card_license:
        return str(card_license)
    if card_text:
        front = _front_matter(card_text)
        match = re.search(r"^license:\s*['\"]?([^'\"\n#]+)", front, flags=re.MULTILINE)
        if match and match.group(1).strip():
            return match.group(1).strip()
    for name in files:
        if name.upper().startswith(("LICENSE", "LICENCE")):
            return f"see {name}"
    return None


def _front_matter(text: str) -> str:
    if not text.startswith("---"):
        return ""
    end = text.find("\n---", 3)
    return text[3:end] if end != -1 else ""


def _read_json(view: RepoView, name: str) -> dict[str, Any] | None:
    text = view.read_text(name)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise IntakeRefused("bad_json", f"{name} is not valid JSON") from None
    return data if isinstance(data, dict) else None


def _human(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n_bytes} B"
