"""The workers' model cache: pinned snapshots on local disk, bounded by a byte budget, least
recently used entries evicted first.

Layout under the cache root:
    entries/<org>--<name>/<sha>/...     one complete snapshot (only intake's allowed files)
    entries/<org>--<name>/<sha>.used    touched on every use (LRU order)
    tmp/                                 downloads in progress; renamed into entries/ when complete
    locks/<org>--<name>--<sha>.lock      flock: exclusive to fill or evict, shared while in use
    locks/_budget.lock                   serialises budget accounting and eviction

Several worker processes share one cache: an entry appears only by an atomic rename of a
finished download, so a reader never sees a half-written snapshot, and an entry someone is using
(shared lock) is never evicted.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# fetch(repo_id, sha, allow_patterns, destination_dir) fills destination_dir with the snapshot.
Fetcher = Callable[[str, str, list[str], Path], None]


class CacheFullError(RuntimeError):
    """The model does not fit the budget even after evicting every unused entry."""


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    size: int
    last_used: float


class ModelCache:
    def __init__(self, root: Path, budget_bytes: int, fetch: Fetcher | None = None, token: str | None = None):
        self.root = Path(root)
        self.budget_bytes = int(budget_bytes)
        self.fetch = fetch or functools.partial(hub_fetch, token=token)
        for sub in ("entries", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

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
        """Bytes this process has written so far into its downloads in progress: the sign a
        long download still advances (a worker's heartbeat beats only while its work does)."""
        mine = f".{os.getpid()}."
        total = 0
        for download in (self.root / "tmp").iterdir():
            if mine not in download.name:
                continue
            for folder, _, names in os.walk(download):
                for name in names:
                    try:
                        total += os.lstat(os.path.join(folder, name)).st_size
                    except FileNotFoundError:
                        continue
        return total

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
            self._make_room(expected_bytes, keep=key)
            tmp = self.root / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                self.fetch(repo_id, sha, allow_patterns, tmp)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, final)  # atomic on one filesystem: readers see all or nothing
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            self._touch(key)
            # The real size may differ from the estimate; evict others if we went over.
            self._make_room(0, keep=key)

    def _make_room(self, incoming: int, keep: str) -> None:
        with self._raw_lock("_budget", fcntl.LOCK_EX):
            self._sweep_tmp()
            entries = sorted(self.entries(), key=lambda e: e.last_used)
            total = sum(e.size for e in entries)
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
            entry.path.with_name(entry.path.name + ".used").unlink(missing_ok=True)
            return True
        finally:
            handle.close()

    def _sweep_tmp(self, older_than_s: float = 24 * 3600) -> None:
        """Leftovers of crashed downloads (a killed worker never renames its tmp dir)."""
        now = time.time()
        for leftover in (self.root / "tmp").iterdir():
            try:
                if leftover.name.startswith("evict-") or now - leftover.stat().st_mtime > older_than_s:
                    shutil.rmtree(leftover, ignore_errors=True)
            except FileNotFoundError:
                continue

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
) -> None:
    """Download repo@sha (only allow_patterns) into `destination` with huggingface_hub.

    Offline (HF_HUB_OFFLINE=1) the snapshot comes from the local HF cache and is copied, so the
    model cache behaves the same whether or not the Hub is reachable."""
    from huggingface_hub import snapshot_download

    from verification.sources import hub_cache_dir, hub_offline

    if hub_offline():
        snapshot = Path(
            snapshot_download(
                repo_id, revision=sha, allow_patterns=allow_patterns, cache_dir=str(hub_cache_dir())
            )
        )
        for name in allow_patterns:
            src = snapshot / name
            if not src.is_file():
                raise FileNotFoundError(f"{repo_id}@{sha[:8]}: {name} missing from the local cache")
            dst = destination / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # follows the cache's blob symlinks
        return
    snapshot_download(
        repo_id,
        revision=sha,
        allow_patterns=allow_patterns,
        local_dir=str(destination),
        token=token or None,
    )
    shutil.rmtree(destination / ".cache", ignore_errors=True)


def _tree_size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        if item.is_file() and not item.is_symlink():
            total += item.stat().st_size
    return total
