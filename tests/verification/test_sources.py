"""Resolving a model SOURCE through huggingface_hub, offline, on a real HF cache layout built by
the session fixtures (tiny-base), plus refs and local directories made here."""

from __future__ import annotations

import shutil

import pytest

from verification import sources, tinymodels as tm
from verification.sources import ResolveError, resolve


def test_hub_repo_resolves_offline_to_the_pinned_snapshot(tiny_base, hf_cache):
    resolved = resolve(tiny_base.repo_id)
    assert resolved.repo_id == tiny_base.repo_id
    assert resolved.sha == tiny_base.sha and len(resolved.sha) == 40
    assert resolved.sha_kind == "commit"
    assert resolved.path == tiny_base.path
    assert (resolved.path / "config.json").is_file() and (resolved.path / "model.safetensors").is_file()
    assert resolved.as_dict()["path"] == str(tiny_base.path)


def test_revision_by_sha_and_by_branch(tiny_base):
    assert resolve(tiny_base.repo_id, tiny_base.sha).sha == tiny_base.sha
    assert resolve(tiny_base.repo_id, "main").sha == tiny_base.sha


def test_a_named_ref_points_at_its_own_snapshot(tiny_builds, hf_cache):
    repo_id = "verity-test/backends-refs"
    base_sha = tm.install_in_hf_cache(tiny_builds["tiny-base"], hf_cache, repo_id, ref="main")
    other_sha = tm.install_in_hf_cache(tiny_builds["tiny-other"], hf_cache, repo_id, ref="v2")
    assert base_sha != other_sha
    assert resolve(repo_id).sha == base_sha
    on_v2 = resolve(repo_id, "v2")
    assert on_v2.sha == other_sha and on_v2.revision == "v2"
    assert on_v2.path.name == other_sha


def test_missing_repo_is_a_clear_error(hf_cache):
    with pytest.raises(ResolveError, match="verity-test/does-not-exist is not in the local Hugging Face cache"):
        resolve("verity-test/does-not-exist")


def test_bad_revision_names_the_revision_and_known_refs(tiny_base):
    with pytest.raises(ResolveError, match=r"revision 'no-such-branch' .* not in the local cache \(known refs: main"):
        resolve(tiny_base.repo_id, "no-such-branch")
    with pytest.raises(ResolveError, match="not in the local cache"):
        resolve(tiny_base.repo_id, "0" * 40)
    with pytest.raises(ResolveError, match="empty --revision"):
        resolve(tiny_base.repo_id, "  ")


@pytest.mark.parametrize("bad", ["a b/c", "x/y/z", "bad--name/model", "just-a-name", "org/-x"])
def test_malformed_repo_ids_are_refused_before_any_lookup(bad, hf_cache):
    with pytest.raises(ResolveError, match="malformed Hugging Face repo id"):
        resolve(bad)


def test_empty_source_is_refused():
    with pytest.raises(ResolveError, match="empty model source"):
        resolve("  ")


def test_snapshot_directory_given_as_a_path_keeps_its_repo_and_commit(tiny_base):
    resolved = resolve(str(tiny_base.path))
    assert (resolved.repo_id, resolved.sha, resolved.sha_kind) == (tiny_base.repo_id, tiny_base.sha, "commit")


def test_plain_local_directory_gets_a_content_digest_that_tracks_its_bytes(tiny_base, tmp_path):
    copy = tmp_path / "my-model"
    shutil.copytree(tiny_base.path, copy)
    first = resolve(str(copy))
    assert first.repo_id is None and first.sha_kind == "content" and len(first.sha) == 40
    assert resolve(str(copy)).sha == first.sha  # deterministic
    (copy / "README.md").write_text("changed card\n")
    assert resolve(str(copy)).sha != first.sha


def test_local_directory_errors(tmp_path, tiny_base):
    with pytest.raises(ResolveError, match="does not exist"):
        resolve(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResolveError, match="no config.json"):
        resolve(str(tmp_path / "empty"))
    with pytest.raises(ResolveError, match="makes no sense for a local directory"):
        resolve(str(tiny_base.path), "main")


def test_online_lookup_failure_is_a_resolve_error_not_a_crash(hf_cache):
    # The test session is offline (HF_HUB_OFFLINE=1), so huggingface_hub refuses the HTTP call;
    # the online path must turn that into a clear ResolveError.
    with pytest.raises(ResolveError, match="cannot reach the Hugging Face Hub|the Hub refused"):
        resolve("verity-test/tiny-base", offline=False)


def test_offline_detection_reads_the_environment_now(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert sources.hub_offline() is True
