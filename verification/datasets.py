"""Where benchmark data comes from: DATASETS_DIR (offline copies, see its README for schemas) or,
when online, the Hugging Face Hub at a pinned dataset revision.

Every load records its source (local path + file sha256, or hub repo + resolved commit sha), and
the benchmark records a content hash of exactly the items it evaluated.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any




class DatasetUnavailable(FileNotFoundError):
    """The benchmark's data is not where it should be (and could not be fetched)."""

_SHA_IN_PATH = re.compile(r"/snapshots/([0-9a-f]{40})/")


def datasets_dir_or_default(explicit: str | Path | None = None) -> Path:
    """The datasets directory: the explicit argument (the caller's configuration), else the
    shared data beside the checkout."""
    if explicit:
        return Path(explicit)
    from verification.config import default_datasets_dir

    found = default_datasets_dir()
    if found is None:
        raise DatasetUnavailable("no benchmark data directory given and none beside the checkout (set DATASETS_DIR)")
    return found


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class HubSource:
    """A dataset file on the Hub, pinned to a revision (a commit sha is the honest pin; a branch
    name is accepted and its resolved commit recorded)."""

    repo_id: str
    filename: str
    revision: str
    cache_dir: str | None = None  # None: huggingface_hub's default cache (HF_HUB_CACHE)


def hub_download(source: HubSource) -> tuple[Path, dict[str, Any]]:
    """Fetch one dataset file with huggingface_hub (repo_type="dataset"); the resolved commit sha
    is read from the snapshot path the hub client returns."""
    from huggingface_hub import hf_hub_download

    try:
        local = hf_hub_download(
            repo_id=source.repo_id,
            filename=source.filename,
            repo_type="dataset",
            revision=source.revision,
            cache_dir=source.cache_dir,
        )
    except Exception as exc:  # offline, missing revision, auth: say which file and why
        raise DatasetUnavailable(
            f"could not fetch {source.filename} from dataset {source.repo_id}@{source.revision}: {exc}"
        ) from exc
    path = Path(local)
    match = _SHA_IN_PATH.search(str(path).replace(os.sep, "/"))
    commit = match.group(1) if match else None
    return path, {
        "kind": "hub",
        "repo_id": source.repo_id,
        "filename": source.filename,
        "revision": source.revision,
        "commit": commit,
        "file_sha256": file_sha256(path),
    }


def resolve_file(
    datasets_dir: Path, relative: str, hub: HubSource | None = None
) -> tuple[Path, dict[str, Any]]:
    """The local copy when present, else the pinned hub file, else a clear error."""
    local = Path(datasets_dir) / relative
    if local.is_file():
        return local, {"kind": "local", "path": str(local), "file_sha256": file_sha256(local)}
    if hub is not None:
        return hub_download(hub)
    raise DatasetUnavailable(
        f"benchmark data file {relative!r} not found under {datasets_dir} "
        "(set DATASETS_DIR, or configure a pinned hub source)"
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[dict[str, Any]] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetUnavailable(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
    return rows


def read_csv_dicts(path: Path) -> list[dict[str, str]]:
    """CSV with a header row; fields may hold commas, quotes and newlines; BOM tolerated."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a data file by its extension (jsonl, jsonl.gz, json list, csv, parquet)."""
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl(path)
    if name.endswith(".csv"):
        return read_csv_dicts(path)
    if name.endswith(".parquet"):
        return read_parquet(path)
    if name.endswith(".json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise DatasetUnavailable(f"{path}: expected a JSON list of records")
        return data
    raise DatasetUnavailable(f"{path}: unsupported data file type")

