"""The workers' model cache: atomic fill, LRU eviction under a byte budget, locks across processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from verification.modelcache import (
    CacheFullError,
    DownloadVerificationError,
    ModelCache,
    blob_hash,
    file_hash,
    hub_fetch,
    hub_hashes,
)

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


def test_a_failed_download_leaves_no_entry_and_keeps_its_bytes_for_the_next_attempt(tmp_path):
    def broken(repo_id, sha, patterns, destination):
        (destination / "w.safetensors.incomplete").write_bytes(b"half")
        raise ConnectionError("hub went away")

    cache = ModelCache(tmp_path / "cache", 10_000, fetch=broken)
    with pytest.raises(ConnectionError):
        with cache.use("org/a", SHA_A, ["w.safetensors"], 8):
            pass
    assert not cache.contains("org/a", SHA_A)
    assert (cache.partial_path("org/a", SHA_A) / "w.safetensors.incomplete").read_bytes() == b"half"

    found: list[bytes] = []

    def resuming(repo_id, sha, patterns, destination):
        incomplete = destination / "w.safetensors.incomplete"
        found.append(incomplete.read_bytes())
        with open(incomplete, "ab") as handle:
            handle.write(b"more")
        incomplete.rename(destination / "w.safetensors")

    cache.fetch = resuming
    with cache.use("org/a", SHA_A, ["w.safetensors"], 8) as path:
        assert (path / "w.safetensors").read_bytes() == b"halfmore"
    assert found == [b"half"]
    assert not list((tmp_path / "cache" / "tmp").iterdir())
    record = json.loads((path.parent / f"{SHA_A}.download.json").read_text())
    assert record["resumed_bytes"] == 4 and record["files"]["w.safetensors"]["verified"] is False


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


# --- large downloads: resumed, verified against the Hub's hashes, planned against the budget ---------

GiB = 1024**3


def hf_cache_layout(model_dir: Path, cache: Path, repo_id: str, sha: str) -> Path:
    """A snapshot installed as huggingface_hub writes one: each file a symlink into blobs/, the
    blob named by its etag (sha256 for the LFS-stored weights, the git blob sha1 otherwise)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / sha
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for src in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        data = src.read_bytes()
        if src.suffix == ".safetensors":
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (repo / "blobs" / etag).write_bytes(data)
        link = snapshot / src.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / etag, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    return snapshot


@pytest.fixture
def hub_snapshot(tiny_base, tmp_path, monkeypatch):
    """tiny-base in a real HF cache layout, read offline through huggingface_hub."""
    hub = tmp_path / "hub"
    snapshot = hf_cache_layout(Path(tiny_base.path), hub, "org/tiny", SHA_A)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    names = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_symlink())
    assert "model.safetensors" in names and "config.json" in names
    return snapshot, names


def test_blob_names_are_the_hashes_the_download_is_checked_against(hub_snapshot):
    snapshot, names = hub_snapshot
    weights = snapshot / "model.safetensors"
    assert blob_hash(weights) == file_hash(weights.resolve(), "sha256") == \
        f"sha256:{hashlib.sha256(weights.read_bytes()).hexdigest()}"
    config = snapshot / "config.json"
    data = config.read_bytes()
    # the git blob id, as `git hash-object` computes it (what the Hub reports for a non-LFS file)
    assert blob_hash(config) == file_hash(config.resolve(), "git-sha1") == \
        f"git-sha1:{hashlib.sha1(b'blob %d' % len(data) + bytes([0]) + data).hexdigest()}"
    assert blob_hash(weights.resolve()) is None  # a plain file carries no hash


def test_an_offline_fill_verifies_every_file_against_its_blob_hash(hub_snapshot, tmp_path):
    snapshot, names = hub_snapshot
    cache = ModelCache(tmp_path / "cache", 10 * GiB)
    with cache.use("org/tiny", SHA_A, names, 0) as path:
        for name in names:
            assert (path / name).read_bytes() == (snapshot / name).read_bytes()
            assert not (path / name).is_symlink()
    record = json.loads((path.parent / f"{SHA_A}.download.json").read_text())
    assert set(record["files"]) == set(names)
    assert all(f["verified"] and f["hub_hash"] == blob_hash(snapshot / n) for n, f in record["files"].items())
    assert record["resumed_bytes"] == 0 and record["refetched"] == []


def test_a_download_killed_half_way_is_resumed_not_restarted(hub_snapshot, tmp_path):
    snapshot, names = hub_snapshot
    cache = ModelCache(tmp_path / "cache", 10 * GiB)
    weights = (snapshot / "model.safetensors").read_bytes()
    partial = cache.partial_path("org/tiny", SHA_A)
    partial.mkdir(parents=True)
    # what a worker killed mid-copy leaves: config done, half the weights in .incomplete
    shutil.copyfile(snapshot / "config.json", partial / "config.json")
    (partial / "model.safetensors.incomplete").write_bytes(weights[: len(weights) // 2])
    inode = (partial / "model.safetensors.incomplete").stat().st_ino
    with cache.use("org/tiny", SHA_A, names, 0) as path:
        assert (path / "model.safetensors").read_bytes() == weights
        # the same file, appended to: the first half was not fetched again
        assert (path / "model.safetensors").stat().st_ino == inode
    record = json.loads((path.parent / f"{SHA_A}.download.json").read_text())
    assert record["resumed_bytes"] == len(weights) // 2 + (snapshot / "config.json").stat().st_size
    assert record["refetched"] == [] and all(f["verified"] for f in record["files"].values())


def test_a_corrupted_partial_download_is_detected_and_fetched_again(hub_snapshot, tmp_path):
    snapshot, names = hub_snapshot
    cache = ModelCache(tmp_path / "cache", 10 * GiB)
    weights = (snapshot / "model.safetensors").read_bytes()
    partial = cache.partial_path("org/tiny", SHA_A)
    partial.mkdir(parents=True)
    # a resumed prefix whose bytes went bad on disk: same length, one byte flipped
    bad = bytearray(weights[: len(weights) // 2])
    bad[100] ^= 0xFF
    (partial / "model.safetensors.incomplete").write_bytes(bytes(bad))
    with cache.use("org/tiny", SHA_A, names, 0) as path:
        assert (path / "model.safetensors").read_bytes() == weights
    record = json.loads((path.parent / f"{SHA_A}.download.json").read_text())
    assert record["refetched"] == ["model.safetensors"]


def test_a_file_that_never_matches_the_hub_hash_is_refused_and_not_kept(hub_snapshot, tmp_path):
    snapshot, names = hub_snapshot
    blob = (snapshot / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # the source itself is corrupt: every fetch brings the same wrong bytes
    blob.write_bytes(bytes(data))
    cache = ModelCache(tmp_path / "cache", 10 * GiB)
    with pytest.raises(DownloadVerificationError, match="model.safetensors did not match the Hub's hash"):
        with cache.use("org/tiny", SHA_A, names, 0):
            pass
    assert not cache.contains("org/tiny", SHA_A)
    partial = cache.partial_path("org/tiny", SHA_A)
    assert not (partial / "model.safetensors").exists()  # the bad bytes are gone
    assert (partial / "config.json").exists()  # the good files wait for the next attempt


def test_hub_hashes_reads_lfs_sha256_and_git_blob_ids_from_the_hubs_file_metadata(monkeypatch):
    """The Hub is out of reach here: its answer is built with huggingface_hub's own RepoFile from
    the JSON the paths-info endpoint returns, and only Verity's reading of it is under test."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    answer = [
        RepoFile(path="model-00001-of-00030.safetensors", size=4_700_000_000, oid="1" * 40,
                 lfs={"size": 4_700_000_000, "oid": "a" * 64, "pointerSize": 135}),
        RepoFile(path="config.json", size=700, oid="c" * 40),
    ]
    asked = []

    def get_paths_info(self, repo_id, paths, *, revision=None, **kwargs):
        asked.append((repo_id, list(paths), revision))
        return answer

    monkeypatch.setattr(HfApi, "get_paths_info", get_paths_info)
    hashes = hub_hashes("org/big", SHA_B, ["config.json", "model-00001-of-00030.safetensors"])
    assert hashes == {"model-00001-of-00030.safetensors": "sha256:" + "a" * 64, "config.json": "git-sha1:" + "c" * 40}
    assert asked == [("org/big", ["config.json", "model-00001-of-00030.safetensors"], SHA_B)]


def sparse_fetch(sizes: dict[str, int]):
    """Writes each file as a sparse file of the given size: a 150 GiB entry costs no disk."""

    def fetch(repo_id, sha, patterns, destination):
        for name in patterns:
            with open(destination / name, "wb") as handle:
                handle.truncate(sizes[name])

    return fetch


def test_a_140_gb_model_in_30_shards_fits_the_budget_by_evicting_the_least_recently_used(tmp_path):
    shard = 140 * 10**9 // 30
    shards = [f"model-{i:05d}-of-00030.safetensors" for i in range(1, 31)]
    sizes = {"old.safetensors": 150 * GiB, **{name: shard for name in shards}}
    cache = ModelCache(tmp_path / "cache", 500 * GiB, fetch=sparse_fetch(sizes))
    for repo, sha in (("org/old1", SHA_A), ("org/old2", SHA_B), ("org/old3", SHA_C)):
        with cache.use(repo, sha, ["old.safetensors"], 150 * GiB):
            pass
        time.sleep(0.02)
    assert cache.total_bytes() == 450 * GiB
    statuses = []
    fetch = cache.fetch

    def watched(repo_id, sha, patterns, destination):
        fetch(repo_id, sha, patterns[:10], destination)
        statuses.append(cache.download_status())
        fetch(repo_id, sha, patterns, destination)

    cache.fetch = watched
    with cache.use("org/old3", SHA_C, ["old.safetensors"], 150 * GiB):  # in use: never evicted
        with cache.use("org/seventy-b", "d" * 40, shards, 140 * 10**9) as path:
            assert len(list(path.iterdir())) == 30
    assert statuses == ["downloading org/seventy-b@dddddddd: 46.67 GB of 140.00 GB"]
    assert not cache.contains("org/old1", SHA_A)  # the least recently used went
    assert cache.contains("org/old2", SHA_B) and cache.contains("org/old3", SHA_C)
    assert cache.total_bytes() == 300 * GiB + 30 * shard <= 500 * GiB
    assert cache.download_status() is None and cache.downloading_bytes() == 0
    # larger than the whole budget: refused before a byte moves
    with pytest.raises(CacheFullError, match="more than the whole cache budget"):
        with cache.use("org/too-big", "e" * 40, shards, 600 * GiB):
            pass
    assert not cache.partial_path("org/too-big", "e" * 40).exists()


def test_a_partial_download_counts_against_the_budget_and_an_abandoned_one_is_swept(tmp_path):
    cache = ModelCache(tmp_path / "cache", 1_000, fetch=writing_fetch(400))
    stale = cache.partial_path("org/dead", SHA_A)
    stale.mkdir(parents=True)
    (stale / "w.safetensors.incomplete").write_bytes(b"x" * 700)
    # 700 bytes wait to be resumed: a 400-byte model does not fit beside them...
    with pytest.raises(CacheFullError):
        with cache.use("org/b", SHA_B, ["w.safetensors"], 400):
            pass
    # ...until nobody has touched them for a week: then they are given up
    week_ago = time.time() - 8 * 24 * 3600
    for item in (stale, stale / "w.safetensors.incomplete"):
        os.utime(item, (week_ago, week_ago))
    with cache.use("org/b", SHA_B, ["w.safetensors"], 400):
        pass
    assert not stale.exists()
