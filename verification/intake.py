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

Every read is bounded (limits below): the number of files, the size of each file Verity fetches
or parses, the size of the safetensors headers, and the model config's sizes, which are checked
against the tensor shapes the headers declare before any model is ever built from that config.
A repository outside these bounds is refused with a code and a reason a submitter can act on.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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

# Files Verity downloads for a model: the top-level safetensors weights and the top-level files that
# build the model and its tokenizer (nothing nested, nothing else: no pickles, code, images or
# optimizer states). README.md is the model card; it is fetched only when within its cap.
WEIGHT_SUFFIX = ".safetensors"
METADATA_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "vocab.txt",
        "tokenizer.model",
        "spiece.model",
        "tekken.json",
        "chat_template.jinja",
        "chat_template.json",
        "preprocessor_config.json",
        "processor_config.json",
        "model.safetensors.index.json",
    }
)
METADATA_PATTERNS = ("*.tiktoken",)
CARD_FILE = "README.md"
# Metadata intake parses itself (it looks for auto_map in them): capped at TEXT_FILE_LIMIT.
PARSED_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
CODE_SUFFIXES = (".py",)
# Bounds on what a repository may make intake read or a worker fetch.
MAX_REPO_FILES = 10_000  # files listed in the repository
MAX_WEIGHT_FILES = 1024  # safetensors shards (the largest public models have a few hundred)
METADATA_FILE_LIMIT = 64 * 1024**2  # each fetched config/tokenizer file (large tokenizer.json ~ 30 MiB)
# Files intake parses itself (config.json, tokenizer_config.json, the card): bigger ones are not
# metadata.
TEXT_FILE_LIMIT = 5 * 1024**2
SAFETENSORS_HEADER_LIMIT = 32 * 1024**2  # one shard's header (real ones are well under 1 MiB)
SAFETENSORS_HEADERS_TOTAL_LIMIT = 256 * 1024**2  # all shards' headers together
# Upper bounds on the config's sizes, far above any published model: a value beyond them (a
# vocab_size of 10**9) would make a worker allocate without limit when the model is built.
CONFIG_BOUNDS = {
    "vocab_size": 2**21,
    "max_position_embeddings": 2**24,
    "n_positions": 2**24,
    "n_ctx": 2**24,
    "hidden_size": 2**17,
    "n_embd": 2**17,
    "d_model": 2**17,
    "intermediate_size": 2**20,
    "n_inner": 2**20,
    "ffn_dim": 2**20,
    "moe_intermediate_size": 2**20,
    "num_hidden_layers": 2**10,
    "n_layer": 2**10,
    "num_layers": 2**10,
    "num_attention_heads": 2**12,
    "n_head": 2**12,
    "num_key_value_heads": 2**12,
    "head_dim": 2**14,
    "num_experts": 2**14,
    "num_local_experts": 2**14,
    "n_routed_experts": 2**14,
}
VOCAB_KEYS = ("vocab_size",)
HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model")
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
POSITION_KEYS = ("max_position_embeddings", "n_positions")
# Tensor names of the token embedding (rows = vocab_size) and of a learned position table.
EMBEDDING_SUFFIXES = (
    "embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight", "embed_in.weight",
)
POSITION_SUFFIXES = ("wpe.weight", "embed_positions.weight", "position_embeddings.weight")
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
# Bytes per element of the safetensors dtypes (sub-byte and unknown dtypes are not size-checked).
DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntakeResult:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


class RepoView(Protocol):
    """Metadata access to one repository at one commit."""

    def files(self) -> dict[str, int]: ...

    def read_text(self, name: str) -> str | None: ...

    def safetensors_header(self, name: str) -> dict[str, Any]: ...


# --- source resolution -------------------------------------------------------------------------


def inspect_source(
    source: str, revision: str | None = None, max_bytes: int | None = None, *, token: str | None = None
) -> IntakeResult:
    """Pin `source` (HF repo id or local directory) and run the intake guards. Raises IntakeRefused.
    Online this is one Hub look-up (model_info) plus the safetensors headers; the result is plain
    data (`as_dict` / `from_dict`) so later steps reuse it instead of asking the Hub again."""
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
    sha, hub_view = _resolve_on_hub(source, wanted, token)
    return _evaluate(source, "hub", source, wanted, sha, None, hub_view, max_bytes)


def resolve_in_cache(repo_id: str, revision: str) -> tuple[str, Path]:
    """Offline pinning through the local HF cache (refs/<revision> -> sha); reads no weights."""
    try:
        return fetch_from_local_cache(repo_id, revision, hub_cache_dir(), None)
    except ResolveError as exc:
        repo_folder = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"
        code = "revision_not_found" if repo_folder.is_dir() else "not_found"
        raise IntakeRefused(code, str(exc)) from None


def resolve_revision(repo_id: str, revision: str | None = "main", *, token: str | None = None) -> str:
    """The commit sha a branch/tag points at now (None: the repo's default branch; used to
    re-check verified repos). Offline the default branch is refs/main in the HF cache."""
    if hub_offline():
        return resolve_in_cache(repo_id, revision or "main")[0]
    return _resolve_on_hub(repo_id, revision, token)[0]


def _resolve_on_hub(repo_id: str, revision: str | None, token: str | None) -> tuple[str, "HubRepoView"]:
    from huggingface_hub import HfApi

    api = HfApi(token=token or None)
    with _hub_errors(repo_id, revision):
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    sha = info.sha
    siblings = info.siblings or []
    if len(siblings) > MAX_REPO_FILES:
        raise _too_many_files(repo_id, len(siblings))
    files = {s.rfilename: int(s.size or 0) for s in siblings}
    card_license = getattr(getattr(info, "card_data", None), "license", None)
    return sha, HubRepoView(api, repo_id, sha, files, card_license)


@contextmanager
def _hub_errors(repo_id: str, revision: str | None, what: str = "lookup") -> Iterator[None]:
    """Every Hub failure becomes a refusal (the repo is not acceptable) or a TransientHubError
    (try again later); nothing else escapes a Hub call."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        HfHubHTTPError,
        NotASafetensorsRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
        SafetensorsParsingError,
    )

    try:
        yield
    except HFValidationError as exc:
        raise IntakeRefused("malformed_repo_id", f"{repo_id!r} is not a valid repo id: {exc}") from None
    except GatedRepoError:
        raise IntakeRefused("gated", f"repository {repo_id} is gated; Verity verifies public models only") from None
    except RepositoryNotFoundError:
        raise IntakeRefused("not_found", f"repository {repo_id} not found on the Hugging Face Hub") from None
    except RevisionNotFoundError:
        raise IntakeRefused("revision_not_found", f"revision {revision!r} of {repo_id} not found") from None
    except (NotASafetensorsRepoError, SafetensorsParsingError) as exc:
        raise IntakeRefused("bad_safetensors", f"{repo_id}: unreadable safetensors metadata ({exc})") from None
    except EntryNotFoundError as exc:
        raise IntakeRefused("not_found", f"{repo_id}: a listed file is missing ({exc})") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None and status < 500 and status != 429:
            raise IntakeRefused("hub_error", f"the Hub refused the {what} of {repo_id}: HTTP {status}") from None
        raise TransientHubError(f"Hub error for {repo_id}: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise TransientHubError(f"cannot reach the Hub for {repo_id}: {exc}") from exc
    except Exception as exc:  # httpx timeouts/connection errors have no common base we can import cheaply
        if "Timeout" in type(exc).__name__ or "Connect" in type(exc).__name__:
            raise TransientHubError(f"cannot reach the Hub for {repo_id}: {exc}") from exc
        raise


def _too_many_files(source: str, count: int) -> IntakeRefused:
    return IntakeRefused(
        "too_many_files", f"{source} lists {count} files, more than intake reads ({MAX_REPO_FILES})"
    )


# --- repo views ----------------------------------------------------------------------------------


class LocalRepoView:
    """A directory on disk: a local model folder or an HF cache snapshot (symlinks to blobs)."""

    def __init__(self, root: Path):
        self.root = root
        self._header_bytes = 0  # read so far, over every shard

    def files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for path in self.root.rglob("*"):
            relative = path.relative_to(self.root).as_posix()
            if relative.startswith(".cache/") or relative.startswith(".git/"):
                continue
            if path.is_file():
                found[relative] = path.stat().st_size  # follows the cache's blob symlinks
                if len(found) > MAX_REPO_FILES:
                    raise _too_many_files(str(self.root), len(found))
        return dict(sorted(found.items()))

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
            self._header_bytes += length
            if self._header_bytes > SAFETENSORS_HEADERS_TOTAL_LIMIT:
                raise ValueError(f"the shards' headers exceed {_human(SAFETENSORS_HEADERS_TOTAL_LIMIT)} together")
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
        with _hub_errors(self.repo_id, self.sha, f"download of {name}"):
            path = hf_hub_download(self.repo_id, name, revision=self.sha)
        if Path(path).stat().st_size > TEXT_FILE_LIMIT:  # the listing understated it
            return None
        return Path(path).read_text(encoding="utf-8", errors="replace")

    def safetensors_header(self, name: str) -> dict[str, Any]:
        if self._headers is None:
            with _hub_errors(self.repo_id, self.sha, "safetensors metadata"):
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
    if len(files) > MAX_REPO_FILES:
        raise _too_many_files(source, len(files))
    weights = _weight_files(files)
    _check_file_caps(files, weights)
    _refuse_remote_code(files, view)
    pickles = sorted(name for name in files if name.lower().endswith(PICKLE_SUFFIXES))
    _refuse_missing_weights(source, weights, pickles)
    config = _read_json(view, "config.json")
    if config is None:
        raise IntakeRefused("no_config", f"{source} has no readable config.json")
    if "auto_map" in config:
        raise IntakeRefused(
            "trust_remote_code",
            "config.json has auto_map: loading it needs trust_remote_code (custom code), which Verity never runs",
        )
    _check_config_bounds(config)
    download = _download_list(files)
    _check_total_size(files, download, max_bytes)
    tensors = _tensor_shapes(view, weights, files)
    _check_config_against_weights(config, tensors)
    dtypes = _dtype_counts(tensors)
    card_text = view.read_text(CARD_FILE) if CARD_FILE in files else None
    license_name = _license(view, card_text, files)
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
        notes=_hygiene_notes(pickles, card_text, license_name),
    )


def _hygiene_notes(pickles: list[str], card_text: str | None, license_name: str | None) -> list[str]:
    notes: list[str] = []
    if pickles:
        notes.append(f"pickle files present and ignored (never downloaded): {', '.join(pickles[:5])}")
    if card_text is None:
        notes.append("no model card (README.md)")
    if not license_name:
        notes.append("no license declared")
    return notes


def _refuse_missing_weights(source: str, weights: list[str], pickles: list[str]) -> None:
    if weights:
        return
    if pickles:
        raise IntakeRefused(
            "pickle_weights",
            f"weights are only in pickle format ({', '.join(pickles[:5])}); Verity loads safetensors only "
            "and never unpickles model files",
        )
    raise IntakeRefused("no_weights", f"{source} has no safetensors weight files")


def _check_file_caps(files: dict[str, int], weights: list[str]) -> None:
    """The count of shards and the size of every file intake reads or a worker fetches."""
    if len(weights) > MAX_WEIGHT_FILES:
        raise IntakeRefused(
            "too_many_files", f"{len(weights)} safetensors shards, more than Verity loads ({MAX_WEIGHT_FILES})"
        )
    for name in sorted(files):
        if name == CARD_FILE or not _is_metadata(name):
            continue  # the card is optional: over its cap it is simply not read nor fetched
        cap = TEXT_FILE_LIMIT if name in PARSED_FILES else METADATA_FILE_LIMIT
        if files[name] > cap:
            raise IntakeRefused(
                "file_too_large",
                f"{name} is {_human(files[name])}; a model's {name} is never over {_human(cap)}",
            )


def _check_total_size(files: dict[str, int], download: list[str], max_bytes: int | None) -> None:
    download_bytes = sum(files[name] for name in download)
    if max_bytes is not None and download_bytes > max_bytes:
        raise IntakeRefused(
            "too_large",
            f"model is {_human(download_bytes)}, over this instance's limit of {_human(max_bytes)} (MAX_MODEL_BYTES)",
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
    return sorted(name for name in files if name.endswith(WEIGHT_SUFFIX) and "/" not in name)


def _is_metadata(name: str) -> bool:
    """A top-level config or tokenizer file (or the card) that a worker fetches with the weights."""
    if "/" in name:
        return False
    return name in METADATA_FILES or name == CARD_FILE or any(fnmatch.fnmatch(name, p) for p in METADATA_PATTERNS)


def _download_list(files: dict[str, int]) -> list[str]:
    """The weights and the top-level metadata files; a card over its cap is simply not fetched."""
    wanted = set(_weight_files(files)) | {name for name in files if _is_metadata(name)}
    if CARD_FILE in wanted and files[CARD_FILE] > TEXT_FILE_LIMIT:
        wanted.discard(CARD_FILE)
    return sorted(wanted)


def download_patterns(result: IntakeResult) -> list[str]:
    """Exact allow-patterns for snapshot_download: only the files intake accepted."""
    return list(result.download_files)


# --- safetensors headers and the config ------------------------------------------------------------


def _tensor_shapes(view: RepoView, weights: Iterable[str], files: dict[str, int]) -> dict[str, tuple[str, list[int]]]:
    """tensor name -> (dtype, shape) over every shard, each header validated: a dtype and a shape
    of non-negative ints per tensor, data inside the file and as large as dtype x shape says."""
    tensors: dict[str, tuple[str, list[int]]] = {}
    for name in weights:
        try:
            header = view.safetensors_header(name)
        except (ValueError, OSError, UnicodeDecodeError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:300]
            raise IntakeRefused("bad_safetensors", f"{name}: unreadable safetensors header ({reason})") from None
        for tensor, info in header.items():
            tensors[f"{tensor}"] = _checked_tensor(name, tensor, info, files.get(name))
    return tensors


def _checked_tensor(name: str, tensor: str, info: Any, file_size: int | None) -> tuple[str, list[int]]:
    def bad(why: str) -> IntakeRefused:
        return IntakeRefused("bad_safetensors", f"{name}: tensor {str(tensor)[:200]!r} {why}")

    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or not isinstance(info.get("shape"), list):
        raise bad("has no dtype/shape")
    shape = info["shape"]
    if len(shape) > 8 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad("has a bad shape")
    offsets = info.get("data_offsets")
    if offsets is not None:
        if not (
            isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] and (file_size is None or offsets[1] <= file_size)
        ):
            raise bad("has data offsets outside its file")
        width = DTYPE_BYTES.get(info["dtype"])
        if width is not None and offsets[1] - offsets[0] != width * math.prod(shape):
            raise bad(f"declares shape {shape} of {info['dtype']} but holds {offsets[1] - offsets[0]} bytes")
    return info["dtype"], shape


def _dtype_counts(tensors: dict[str, tuple[str, list[int]]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for dtype, shape in tensors.values():
        counts[dtype] = counts.get(dtype, 0) + math.prod(shape)
    return counts


def _config_sections(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The config and its nested sub-configs (text_config, vision_config, ...), one level deep."""
    sections = [("config.json", config)]
    sections += [
        (f"config.json {key}", value)
        for key, value in config.items()
        if isinstance(value, dict) and key.endswith("config")
    ]
    return sections


def _check_config_bounds(config: dict[str, Any]) -> None:
    """Every size a model is built from is a positive integer within CONFIG_BOUNDS."""
    for where, section in _config_sections(config):
        for key, bound in CONFIG_BOUNDS.items():
            value = section.get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= bound:
                raise IntakeRefused(
                    "config_out_of_bounds",
                    f"{where} sets {key}={str(value)[:40]}; Verity builds models with {key} between 1 and {bound}",
                )


def _first_size(config: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, int] | None:
    """The first of `keys` set in the config or, for multimodal models, its text_config."""
    for section in (config, config.get("text_config") if isinstance(config.get("text_config"), dict) else {}):
        for key in keys:
            if isinstance(section.get(key), int):
                return key, section[key]
    return None


def _check_config_against_weights(config: dict[str, Any], tensors: dict[str, tuple[str, list[int]]]) -> None:
    """The config may not ask for more than the weights hold: a model built from it would not be
    this model, and its buffers (a vocab_size of 10**9) may not fit in memory. Checked from the
    headers alone, before anything is downloaded or built."""
    if not tensors:
        return

    def mismatch(why: str) -> IntakeRefused:
        return IntakeRefused("config_mismatch", f"config.json does not match the safetensors weights: {why}")

    dims = {d for _, shape in tensors.values() for d in shape}
    hidden = _first_size(config, HIDDEN_KEYS)
    if hidden and hidden[1] not in dims:
        raise mismatch(f"{hidden[0]}={hidden[1]} is not a dimension of any tensor")
    vocab = _first_size(config, VOCAB_KEYS)
    embedding = _tensor_ending(tensors, EMBEDDING_SUFFIXES)
    rows = embedding[1][0] if embedding else max(dims, default=0)
    if vocab and vocab[1] > rows:
        where = f"{embedding[0]} has {rows} rows" if embedding else f"no tensor has more than {rows} rows"
        raise mismatch(f"vocab_size={vocab[1]} but {where}")
    layers = _first_size(config, LAYER_KEYS)
    indices = {int(m.group(1)) for name in tensors for m in [LAYER_INDEX.search(name)] if m}
    if layers and indices and layers[1] > len(indices):
        raise mismatch(f"{layers[0]}={layers[1]} but the weights hold {len(indices)} layers")
    positions = _first_size(config, POSITION_KEYS)
    table = _tensor_ending(tensors, POSITION_SUFFIXES)
    if positions and table and positions[1] > table[1][0]:
        raise mismatch(f"{positions[0]}={positions[1]} but {table[0]} has {table[1][0]} rows")


def _tensor_ending(tensors: dict[str, tuple[str, list[int]]], suffixes: tuple[str, ...]) -> tuple[str, list[int]] | None:
    for name in sorted(tensors):
        shape = tensors[name][1]
        if name.endswith(suffixes) and len(shape) == 2:
            return name, shape
    return None


# --- the card --------------------------------------------------------------------------------------


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
    except (json.JSONDecodeError, RecursionError):
        raise IntakeRefused("bad_json", f"{name} is not valid JSON (or is nested too deeply)") from None
    return data if isinstance(data, dict) else None


def _human(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n_bytes} B"
