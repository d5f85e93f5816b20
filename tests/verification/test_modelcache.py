"""The workers' model cache: atomic fill, LRU eviction under a byte budget, locks across processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from verification.modelcache import CacheFullError, ModelCache

SHA_A, SHA_B, SHA_C = ("a" * 40), ("b" * 40), ("c" * 40)


def writing_fetch(size: int, log_dir: Path | None = None, delay: float = 0.0):
    """A fetcher that writes `size` bytes per file and records each call in log_dir."""

    def fetch(repo_id: str, sha: str, patterns: list[str], destination: Path) -> None:
        if log_dir is not None:
            (log_dir / f"{repo_id.replace('/', '--')}-{sha[:6]}-{os.getpid()}-{time.monotonic_ns()}").touch()
        time.sleep(delay)
        for name in patterns:
            (destination / name).write_bytes(b"x" * size)

    return fetch


def test_fill_once_then_reuse(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    cache = ModelCache(tmp_path / "cache", 10_000, fetch=writing_fetch(100, calls))
    with cache.use("org/a", SHA_A, ["model.safetensors"], 100) as path:
        assert (path / "model.safetensors").read_bytes() == b"x" * 100
    with cache.use("org/a", SHA_A, ["model.safetensors"], 100) as again:
        assert again == path
    assert len(list(calls.iterdir())) == 1
    assert not list((tmp_path / "cache" / "tmp").iterdir())


def test_least_recently_used_entry_is_evicted_first(tmp_path):
    cache = ModelCache(tmp_path / "cache", 2_500, fetch=writing_fetch(1_000))
    for repo, sha in (("org/a", SHA_A), ("org/b", SHA_B)):
        with cache.use(repo, sha, ["w.safetensors"], 1_000):
            pass
        time.sleep(0.02)
    with cache.use("org/a", SHA_A, ["w.safetensors"], 1_000):  # a is now the most recently used
        pass
    with cache.use("org/c", SHA_C, ["w.safetensors"], 1_000):
        pass
    assert cache.contains("org/a", SHA_A) and cache.contains("org/c", SHA_C)
    assert not cache.contains("org/b", SHA_B)
    assert cache.total_bytes() <= 2_500


def test_an_entry_in_use_is_never_evicted(tmp_path):
    cache = ModelCache(tmp_path / "cache", 1_500, fetch=writing_fetch(1_000))
    with cache.use("org/a", SHA_A, ["w.safetensors"], 1_000) as held:
        with pytest.raises(CacheFullError, match="in use"):
            with cache.use("org/b", SHA_B, ["w.safetensors"], 1_000):
                pass
        assert (held / "w.safetensors").exists()
    assert not cache.contains("org/b", SHA_B)
    assert not list((tmp_path / "cache" / "tmp").iterdir())  # the refused download left nothing


def test_a_failed_download_leaves_no_entry(tmp_path):
    def broken(repo_id, sha, patterns, destination):
        (destination / "partial.safetensors").write_bytes(b"half")
        raise ConnectionError("hub went away")

    cache = ModelCache(tmp_path / "cache", 10_000, fetch=broken)
    with pytest.raises(ConnectionError):
        with cache.use("org/a", SHA_A, ["partial.safetensors"], 4):
            pass
    assert not cache.contains("org/a", SHA_A)
    assert not list((tmp_path / "cache" / "tmp").iterdir())


def test_model_larger_than_the_budget_is_refused_before_download(tmp_path):
    cache = ModelCache(tmp_path / "cache", 100, fetch=writing_fetch(1_000))
    with pytest.raises(CacheFullError, match="more than the whole cache budget"):
        with cache.use("org/a", SHA_A, ["w.safetensors"], 1_000):
            pass


def _worker(root: str, calls: str, results: str) -> None:
    cache = ModelCache(Path(root), 100_000, fetch=writing_fetch(5_000, Path(calls), delay=0.3))
    with cache.use("org/shared", SHA_A, ["a.safetensors", "b.safetensors"], 10_000) as path:
        sizes = sorted((p.name, p.stat().st_size) for p in path.iterdir())
    (Path(results) / str(os.getpid())).write_text(repr(sizes))


def test_concurrent_processes_share_one_download_and_never_see_a_partial_entry(tmp_path):
    calls, results = tmp_path / "calls", tmp_path / "results"
    calls.mkdir()
    results.mkdir()
    context = multiprocessing.get_context("fork")
    procs = [
        context.Process(target=_worker, args=(str(tmp_path / "cache"), str(calls), str(results)))
        for _ in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert len(list(calls.iterdir())) == 1
    seen = {p.read_text() for p in results.iterdir()}
    assert seen == {repr([("a.safetensors", 5_000), ("b.safetensors", 5_000)])}
