"""The workers' model cache: pinned snapshots on local disk, bounded by a byte budget, least
recently used entries evicted first.

Layout under the cache root:
    entries/<org>--<name>/<sha>/...     one complete snapshot (only intake's allowed files)
    entries/<org>--<name>/<sha>.used    touched on every use (LRU order)
    entries/<org>--<name>/<sha>.download.json   how it was fetched: each file's bytes and the
                                         Hub hash it was verified against (or that none was known)
    tmp/<key>.partial/                   the download in progress of one entry: a worker killed
                                         mid-download leaves it, and the next one resumes it
    locks/<org>--<name>--<sha>.lock      flock: exclusive to fill or evict, shared while in use
    locks/_budget.lock                   serialises budget accounting and eviction

Several worker processes share one cache: an entry appears only by an atomic rename of a
finished, verified download, so a reader never sees a half-written snapshot, and an entry someone
is using (shared lock) is never evicted.

Large downloads (docs/scaling.md): the fill is planned against the budget before a byte moves
(a model larger than the whole budget is refused, least recently used entries are evicted to make
room, partial downloads count against the budget); the files land in the entry's own partial
directory, so a download interrupted by a dead worker resumes where it stopped (huggingface_hub
resumes its `.incomplete` files; the offline copy appends from the partial file's length); every
file is then checked against the Hub's hash of it (sha256 for LFS files, the git blob sha1 for the
others): a file that does not match is fetched again once, and refused if it still does not.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# fetch(repo_id, sha, allow_patterns, destination_dir) fills destination_dir with the snapshot,
# resuming what an earlier attempt left there, and returns the Hub's hash of each file it knows
# ("sha256:<hex>" for LFS files, "git-sha1:<hex>" for the others; None or a missing name: unknown).
Fetcher = Callable[[str, str, list[str], Path], "dict[str, str] | None"]

# Bytes read per call while copying or hashing (a 5 GB shard is hashed in 640 reads).
_BLOCK = 8 * 1024 * 1024
# A partial download nobody is filling, untouched this long, is given up and deleted.
STALE_PARTIAL_S = 7 * 24 * 3600.0


class CacheFullError(RuntimeError):
    """The model does not fit the budget even after evicting every unused entry."""


class DownloadVerificationError(RuntimeError):
    """A downloaded file does not match the Hub's hash of it, even after fetching it again."""


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    size: int
    last_used: float


@dataclass
class _Fill:
    """One fill in progress in this process (the heartbeat's thread reads it)."""

    repo_id: str
    sha: str
    partial: Path
    expected_bytes: int
    verifying: bool = False
    hashed_bytes: int = 0


class ModelCache:
    def __init__(self, root: Path, budget_bytes: int, fetch: Fetcher | None = None, token: str | None = None):
        self.root = Path(root)
        self.budget_bytes = int(budget_bytes)
        self.fetch = fetch or functools.partial(hub_fetch, token=token)
        for sub in ("entries", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # This process's fills in progress (read by the heartbeat's thread): key -> progress.
        self._filling: dict[str, _Fill] = {}
        self._filling_lock = threading.Lock()

    # --- public API ---------------------------------------------------------------------------

    @contextmanager
    def use(
        self, repo_id: str, sha: str, allow_patterns: list[str], expected_bytes: int = 0
    ) -> Iterator[Path]:
        """Yield the local snapshot of repo@sha, downloading it first if needed. The entry cannot
        be evicted while the block runs."""
        key = entry_key(repo_id, sha)
        for attempt in range(3):
            if attempt:
                self._fill(key, repo_id, sha, allow_patterns, expected_bytes)
            with self._lock(key, fcntl.LOCK_SH):
                path = self._entry_path(key)
                if path.is_dir():
                    self._touch(key)
                    yield path
                    return
        raise RuntimeError(f"model cache entry {key} keeps disappearing (evicted while being filled?)")

    def entries(self) -> list[CacheEntry]:
        found: list[CacheEntry] = []
        entries_dir = self.root / "entries"
        for repo_dir in sorted(entries_dir.iterdir()):
            if not repo_dir.is_dir():
                continue
            for snapshot in sorted(repo_dir.iterdir()):
                if not snapshot.is_dir():
                    continue
                key = f"{repo_dir.name}--{snapshot.name}"
                used = snapshot.with_name(snapshot.name + ".used")
                last_used = used.stat().st_mtime if used.exists() else snapshot.stat().st_mtime
                found.append(CacheEntry(key, snapshot, _tree_size(snapshot), last_used))
        return found

    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.entries())

    def contains(self, repo_id: str, sha: str) -> bool:
        return self._entry_path(entry_key(repo_id, sha)).is_dir()

    def downloading_bytes(self) -> int:
        """Bytes this process's fills in progress have written (resumed bytes included) plus the
        bytes they have hashed: the sign a long download still advances (a worker's heartbeat
        beats only while its work does)."""
        with self._filling_lock:
            fills = list(self._filling.values())
        return sum(_all_bytes(fill.partial) + fill.hashed_bytes for fill in fills)

    def download_status(self) -> str | None:
        """What this process is fetching, for the run page ("downloading org/m@1a2b3c4d: 1.20 of
        140.00 GB"), or None when it is not fetching anything."""
        with self._filling_lock:
            fills = list(self._filling.values())
        if not fills:
            return None
        fill = fills[0]
        if fill.verifying:
            return (
                f"verifying {fill.repo_id}@{fill.sha[:8]} against the Hub's hashes: "
                f"{_human(fill.hashed_bytes)} of {_human(fill.expected_bytes)}"
            )
        done = min(_all_bytes(fill.partial), fill.expected_bytes) if fill.expected_bytes else _all_bytes(fill.partial)
        of = f" of {_human(fill.expected_bytes)}" if fill.expected_bytes else ""
        return f"downloading {fill.repo_id}@{fill.sha[:8]}: {_human(done)}{of}"

    def partial_path(self, repo_id: str, sha: str) -> Path:
        """Where repo@sha's download in progress lives (resumed by the next fill)."""
        return self.root / "tmp" / f"{entry_key(repo_id, sha)}.partial"

    # --- internals ------------------------------------------------------------------------------

    def _fill(self, key: str, repo_id: str, sha: str, allow_patterns: list[str], expected_bytes: int) -> None:
        with self._lock(key, fcntl.LOCK_EX):
            final = self._entry_path(key)
            if final.is_dir():
                return  # another worker filled it while we waited
            if expected_bytes > self.budget_bytes:
                raise CacheFullError(
                    f"{repo_id} needs {expected_bytes} bytes, more than the whole cache budget ({self.budget_bytes})"
                )
            partial = self.root / "tmp" / f"{key}.partial"
            # What an interrupted fill left here is already on disk (and counted as such).
            self._make_room(max(0, expected_bytes - _all_bytes(partial)), keep=key)
            partial.mkdir(parents=True, exist_ok=True)
            fill = _Fill(repo_id, sha, partial, expected_bytes)
            with self._filling_lock:
                self._filling[key] = fill
            try:
                record = self._fetch_verified(fill, allow_patterns)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(partial, final)  # atomic on one filesystem: readers see all or nothing
            finally:
                with self._filling_lock:
                    self._filling.pop(key, None)
            final.with_name(final.name + ".download.json").write_text(json.dumps(record, indent=1))
            self._touch(key)
            # The real size may differ from the estimate; evict others if we went over.
            self._make_room(0, keep=key)

    def _fetch_verified(self, fill: _Fill, allow_patterns: list[str]) -> dict:
        """Fetch into the partial directory (resuming), then check every file against the Hub's
        hash; a mismatching file is deleted and fetched once more, then refused. Returns the
        record kept beside the entry."""
        resumed = _all_bytes(fill.partial)
        hashes = self.fetch(fill.repo_id, fill.sha, allow_patterns, fill.partial) or {}
        bad = self._verify(fill, hashes)
        refetched = sorted(bad)
        if bad:
            for name in bad:
                (fill.partial / name).unlink(missing_ok=True)
            hashes = self.fetch(fill.repo_id, fill.sha, allow_patterns, fill.partial) or {}
            bad = self._verify(fill, hashes)
        if bad:
            for name in bad:  # never kept: the next attempt fetches them from scratch
                (fill.partial / name).unlink(missing_ok=True)
            raise DownloadVerificationError(
                f"{fill.repo_id}@{fill.sha[:8]}: {', '.join(sorted(bad))} did not match the Hub's hash "
                "after a second download; not used"
            )
        files = {}
        for item in sorted(fill.partial.rglob("*")):
            if item.is_file():
                name = item.relative_to(fill.partial).as_posix()
                files[name] = {"bytes": item.stat().st_size, "hub_hash": hashes.get(name), "verified": name in hashes}
        return {"repo_id": fill.repo_id, "sha": fill.sha, "resumed_bytes": resumed, "refetched": refetched,
                "files": files, "fetched_at": time.time()}

    def _verify(self, fill: _Fill, hashes: dict[str, str]) -> set[str]:
        """Names whose bytes on disk do not match their Hub hash (a missing file is a mismatch)."""
        fill.verifying, fill.hashed_bytes = True, 0
        try:
            bad = set()
            for name, expected in sorted(hashes.items()):
                path = fill.partial / name
                if not path.is_file() or file_hash(path, expected.split(":", 1)[0], fill) != expected:
                    bad.add(name)
            return bad
        finally:
            fill.verifying = False

    def _make_room(self, incoming: int, keep: str) -> None:
        with self._raw_lock("_budget", fcntl.LOCK_EX):
            self._sweep_tmp()
            entries = sorted(self.entries(), key=lambda e: e.last_used)
            total = sum(e.size for e in entries) + self._partials_bytes(keep)
            for entry in entries:
                if total + incoming <= self.budget_bytes:
                    return
                if entry.key == keep:
                    continue
                if self._evict(entry):
                    total -= entry.size
            if total + incoming > self.budget_bytes:
                raise CacheFullError(
                    f"model cache over budget: {total} bytes in use + {incoming} incoming > {self.budget_bytes}; "
                    "the remaining entries are in use"
                )

    def _evict(self, entry: CacheEntry) -> bool:
        """Remove an entry unless someone holds it (non-blocking exclusive lock)."""
        handle = open(self._lock_path(entry.key), "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            # Rename first so a concurrent reader never sees a half-deleted tree.
            doomed = self.root / "tmp" / f"evict-{entry.key}-{uuid.uuid4().hex[:8]}"
            os.rename(entry.path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            for suffix in (".used", ".download.json"):
                entry.path.with_name(entry.path.name + suffix).unlink(missing_ok=True)
            return True
        finally:
            handle.close()

    def _partials_bytes(self, keep: str) -> int:
        """Disk held by other entries' downloads in progress or waiting to be resumed."""
        return sum(
            _all_bytes(partial) for partial in (self.root / "tmp").glob("*.partial") if partial.name != f"{keep}.partial"
        )

    def _sweep_tmp(self, older_than_s: float = STALE_PARTIAL_S) -> None:
        """Evicted trees, and partial downloads nobody has resumed for `older_than_s` (one being
        filled holds its entry's lock and is never touched)."""
        now = time.time()
        for leftover in (self.root / "tmp").iterdir():
            try:
                if leftover.name.startswith("evict-"):
                    shutil.rmtree(leftover, ignore_errors=True)
                elif now - _newest_mtime(leftover) > older_than_s:
                    self._drop_abandoned(leftover)
            except FileNotFoundError:
                continue

    def _drop_abandoned(self, leftover: Path) -> None:
        if not leftover.name.endswith(".partial"):
            shutil.rmtree(leftover, ignore_errors=True)  # no entry's lock guards it
            return
        key = leftover.name.removesuffix(".partial")
        handle = open(self._lock_path(key), "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # being filled (or used) right now
            shutil.rmtree(leftover, ignore_errors=True)
        finally:
            handle.close()

    def _entry_path(self, key: str) -> Path:
        repo_part, sha = key.rsplit("--", 1)
        return self.root / "entries" / repo_part / sha

    def _touch(self, key: str) -> None:
        path = self._entry_path(key)
        used = path.with_name(path.name + ".used")
        used.touch()
        now = time.time()
        os.utime(used, (now, now))

    def _lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    @contextmanager
    def _lock(self, key: str, mode: int) -> Iterator[None]:
        with self._raw_lock(key, mode):
            yield

    @contextmanager
    def _raw_lock(self, name: str, mode: int) -> Iterator[None]:
        handle = open(self._lock_path(name), "a+")
        try:
            fcntl.flock(handle, mode)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def entry_key(repo_id: str, sha: str) -> str:
    if not sha or "/" in sha or sha.startswith("."):
        raise ValueError(f"bad sha {sha!r}")
    return f"{repo_id.replace('/', '--')}--{sha}"


def hub_fetch(
    repo_id: str, sha: str, allow_patterns: list[str], destination: Path, *, token: str | None = None
) -> dict[str, str]:
    """Download repo@sha (only allow_patterns) into `destination` with huggingface_hub, resuming
    what an earlier attempt left there; returns the Hub's hash of each file.

    Online, huggingface_hub resumes its `.incomplete` files in the destination, and the hashes
    come from the Hub's file metadata (`HfApi.get_paths_info`: the LFS sha256, else the git blob
    id). Offline (HF_HUB_OFFLINE=1) the snapshot comes from the local HF cache, copied with
    resume, and the hashes are the cache's blob names (huggingface_hub names each blob by its
    etag: the sha256 of an LFS file, the git blob sha1 of any other)."""
    from huggingface_hub import snapshot_download

    from verification.sources import hub_cache_dir, hub_offline

    if hub_offline():
        snapshot = Path(
            snapshot_download(
                repo_id, revision=sha, allow_patterns=allow_patterns, cache_dir=str(hub_cache_dir())
            )
        )
        hashes = {}
        for name in allow_patterns:
            src = snapshot / name
            if not src.is_file():
                raise FileNotFoundError(f"{repo_id}@{sha[:8]}: {name} missing from the local cache")
            copy_resuming(src, destination / name)  # follows the cache's blob symlinks
            known = blob_hash(src)
            if known:
                hashes[name] = known
        return hashes
    hashes = hub_hashes(repo_id, sha, allow_patterns, token=token)
    snapshot_download(
        repo_id,
        revision=sha,
        allow_patterns=allow_patterns,
        local_dir=str(destination),
        token=token or None,
    )
    shutil.rmtree(destination / ".cache", ignore_errors=True)
    return hashes


def hub_hashes(repo_id: str, sha: str, names: list[str], *, token: str | None = None) -> dict[str, str]:
    """The Hub's hash of each file at the pinned sha: "sha256:<hex>" for an LFS file (its
    `lfs.sha256`), "git-sha1:<hex>" for any other (its git blob id)."""
    from huggingface_hub import HfApi

    hashes = {}
    for info in HfApi(token=token or None).get_paths_info(repo_id, list(names), revision=sha):
        lfs = getattr(info, "lfs", None)
        if lfs is not None and getattr(lfs, "sha256", None):
            hashes[info.path] = f"sha256:{lfs.sha256}"
        elif getattr(info, "blob_id", None):
            hashes[info.path] = f"git-sha1:{info.blob_id}"
    return hashes


def blob_hash(snapshot_file: Path) -> str | None:
    """The hash a file of an HF cache snapshot is stored under: its symlink's blob name (the
    etag: 64 hex digits for an LFS sha256, 40 for a git blob sha1); None for a plain file."""
    if not snapshot_file.is_symlink():
        return None
    name = snapshot_file.resolve().name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return f"sha256:{name}"
    if len(name) == 40 and all(c in "0123456789abcdef" for c in name):
        return f"git-sha1:{name}"
    return None


def file_hash(path: Path, kind: str, fill: _Fill | None = None) -> str:
    """`kind:<hex>` of a file, streamed ("sha256", or "git-sha1": sha1 of "blob <size>\\0" and
    the bytes, as `git hash-object` computes it). `fill` counts the bytes hashed (progress)."""
    if kind == "sha256":
        digest = hashlib.sha256()
    elif kind == "git-sha1":
        digest = hashlib.sha1()
        digest.update(f"blob {path.stat().st_size}\0".encode())
    else:
        raise ValueError(f"unknown hash kind {kind!r}")
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            if fill is not None:
                fill.hashed_bytes += len(block)
    return f"{kind}:{digest.hexdigest()}"


def copy_resuming(src: Path, dst: Path) -> None:
    """Copy src to dst through `dst.incomplete`, appending from where an interrupted copy
    stopped; a complete dst of the right size is left as it is (verification judges it)."""
    size = src.stat().st_size
    if dst.is_file() and dst.stat().st_size == size:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    incomplete = dst.with_name(dst.name + ".incomplete")
    done = incomplete.stat().st_size if incomplete.is_file() else 0
    if done > size:
        done = 0
    with open(src, "rb") as source, open(incomplete, "r+b" if done else "wb") as target:
        source.seek(done)
        target.seek(done)
        target.truncate()
        while block := source.read(_BLOCK):
            target.write(block)
    os.replace(incomplete, dst)


def _tree_size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        if item.is_file() and not item.is_symlink():
            total += item.stat().st_size
    return total


def _all_bytes(path: Path) -> int:
    """Bytes of every file under `path`, hidden download scratch included (0 when absent)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


def _newest_mtime(path: Path) -> float:
    newest = path.stat().st_mtime
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _human(n_bytes: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.2f} {unit}"
    return f"{n_bytes} bytes"
