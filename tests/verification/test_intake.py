"""Intake guards on real repos in a real HF cache layout (offline hub): pin, refuse, record."""

from __future__ import annotations

import json
import struct

import pytest

from tests.workers.pipeline_helpers import pickle_only_repo, variant_repo
from verification.intake import IntakeRefused, inspect_source, resolve_revision


def test_tiny_model_is_pinned_and_its_hygiene_facts_come_from_headers(tiny_base):
    result = inspect_source(tiny_base.repo_id, "main", max_bytes=10**9)
    assert result.sha == tiny_base.sha and result.kind == "hub"
    assert result.format == "safetensors" and result.dtype == "F32" and result.shards == 1
    assert result.bytes == (tiny_base.path / "model.safetensors").stat().st_size
    # parameters counted from the header equal the real tensor sizes
    from safetensors import safe_open

    with safe_open(str(tiny_base.path / "model.safetensors"), "pt") as handle:
        real = sum(_prod(handle.get_slice(name).get_shape()) for name in handle.keys())
    assert result.parameters == real
    assert result.license == "apache-2.0" and result.card is True
    assert "model.safetensors" in result.download_files and "config.json" in result.download_files
    assert resolve_revision(tiny_base.repo_id) == tiny_base.sha


def _prod(shape):
    out = 1
    for dim in shape:
        out *= dim
    return out


def test_pickle_only_weights_are_refused_and_never_loaded(tiny_base, hf_cache, tmp_path):
    marker = tmp_path / "unpickled.marker"
    pickle_only_repo(tiny_base.path, tmp_path, hf_cache, "verity-test/intake-pickle", marker)
    with pytest.raises(IntakeRefused) as refused:
        inspect_source("verity-test/intake-pickle", None, max_bytes=10**9)
    assert refused.value.code == "pickle_weights" and "pytorch_model.bin" in refused.value.reason
    assert not marker.exists()


def test_safetensors_beside_pickles_is_accepted_and_the_pickle_never_fetched(tiny_base, hf_cache, tmp_path):
    variant_repo(
        tiny_base.path, tmp_path, hf_cache, "verity-test/intake-both", add={"pytorch_model.bin": b"junk"}
    )
    result = inspect_source("verity-test/intake-both", None, max_bytes=10**9)
    assert "pytorch_model.bin" not in result.download_files
    assert any("pickle files present and ignored" in note for note in result.notes)


@pytest.mark.parametrize(
    "change, code",
    [
        (
            dict(config_update={"auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}),
            "trust_remote_code",
        ),
        (dict(add={"modeling_x.py": "import os\n"}), "trust_remote_code"),
        (dict(drop=("config.json",)), "no_config"),
        (dict(add={"model.safetensors": struct.pack("<Q", 10**12) + b"{}"}), "bad_safetensors"),
    ],
)
def test_hostile_repos_are_refused(tiny_base, hf_cache, tmp_path, change, code):
    repo = f"verity-test/intake-{code.replace('_', '-')}-{len(change)}{sorted(change)[0]}"
    variant_repo(tiny_base.path, tmp_path, hf_cache, repo, **change)
    with pytest.raises(IntakeRefused) as refused:
        inspect_source(repo, None, max_bytes=10**9)
    assert refused.value.code == code


def test_size_cap_missing_card_missing_repo_and_bad_ids(tiny_base, hf_cache, tmp_path):
    with pytest.raises(IntakeRefused) as refused:
        inspect_source(tiny_base.repo_id, None, max_bytes=1_000_000)
    assert refused.value.code == "too_large" and "MAX_MODEL_BYTES" in refused.value.reason

    variant_repo(tiny_base.path, tmp_path, hf_cache, "verity-test/intake-nocard", drop=("README.md",))
    result = inspect_source("verity-test/intake-nocard", None, max_bytes=10**9)
    assert result.card is False and result.license is None
    assert "no model card (README.md)" in result.notes and "no license declared" in result.notes

    with pytest.raises(IntakeRefused) as refused:
        inspect_source("verity-test/does-not-exist", None, max_bytes=10**9)
    assert refused.value.code == "not_found" and "not in the local Hugging Face cache" in refused.value.reason
    with pytest.raises(IntakeRefused) as refused:
        inspect_source(tiny_base.repo_id, "no-such-branch", max_bytes=10**9)
    assert refused.value.code == "revision_not_found"
    for bad in ("org/na me", "org--x/y", "a/b/c", "-org/name"):
        with pytest.raises(IntakeRefused) as refused:
            inspect_source(bad, None, max_bytes=10**9)
        assert refused.value.code == "malformed_repo_id", bad


def test_local_directory_is_taken_as_is_without_a_sha(tiny_base):
    result = inspect_source(str(tiny_base.path), None, max_bytes=10**9)
    assert result.kind == "local" and result.sha is None and result.shards == 1
    config = json.loads((tiny_base.path / "config.json").read_text())
    assert result.config["hidden_size"] == config["hidden_size"]
