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


# --- bounds: files, headers, config --------------------------------------------------------------


def _snapshot(hf_cache, repo_id: str, sha: str):
    org, name = repo_id.split("/")
    return hf_cache / f"models--{org}--{name}" / "snapshots" / sha


def _refused(repo: str) -> IntakeRefused:
    with pytest.raises(IntakeRefused) as refused:
        inspect_source(repo, None, max_bytes=10**9)
    return refused.value


def test_only_top_level_config_and_tokenizer_files_are_fetched(tiny_base, hf_cache, tmp_path):
    repo = "verity-test/intake-nested"
    variant_repo(
        tiny_base.path, tmp_path, hf_cache, repo,
        add={"checkpoints/config.json": "{}", "logs/train.txt": "x", "eval_results.json": "{}",
             "notes.txt": "x", "original/model.safetensors": b"junk"},
    )
    result = inspect_source(repo, None, max_bytes=10**9)
    assert result.download_files == sorted(
        ["README.md", "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
         "tokenizer.json", "tokenizer_config.json"]
    )


def test_a_two_gigabyte_config_is_refused_by_its_size_without_being_read(tiny_base, hf_cache, tmp_path):
    repo = "verity-test/intake-huge-config"
    sha = variant_repo(tiny_base.path, tmp_path, hf_cache, repo)
    config = _snapshot(hf_cache, repo, sha) / "config.json"
    config.unlink()
    with open(config, "wb") as handle:  # sparse: 2 GiB on paper, nothing on disk
        handle.truncate(2 * 1024**3)
    refused = _refused(repo)
    assert refused.code == "file_too_large" and "config.json is 2.0 GiB" in refused.reason


def test_too_many_files_and_oversized_tokenizer_are_refused(tiny_base, hf_cache, tmp_path, monkeypatch):
    from verification import intake

    repo = "verity-test/intake-many-files"
    variant_repo(tiny_base.path, tmp_path, hf_cache, repo, add={f"extra/{i}.txt": "x" for i in range(12)})
    monkeypatch.setattr(intake, "MAX_REPO_FILES", 10)
    assert _refused(repo).code == "too_many_files"
    monkeypatch.setattr(intake, "MAX_REPO_FILES", 10_000)
    monkeypatch.setattr(intake, "METADATA_FILE_LIMIT", 1000)
    refused = _refused(repo)
    assert refused.code == "file_too_large" and "tokenizer.json" in refused.reason


@pytest.mark.parametrize(
    "update, code, words",
    [
        ({"vocab_size": 10**9}, "config_out_of_bounds", "vocab_size=1000000000"),
        ({"num_hidden_layers": -1}, "config_out_of_bounds", "num_hidden_layers=-1"),
        ({"max_position_embeddings": 1e30}, "config_out_of_bounds", "max_position_embeddings"),
        ({"text_config": {"hidden_size": True}}, "config_out_of_bounds", "text_config"),
        ({"vocab_size": 4096}, "config_mismatch", "vocab_size=4096 but model.embed_tokens.weight has 2048 rows"),
        ({"hidden_size": 200}, "config_mismatch", "hidden_size=200 is not a dimension"),
        ({"num_hidden_layers": 64}, "config_mismatch", "num_hidden_layers=64 but the weights hold 2 layers"),
    ],
)
def test_config_sizes_are_bounded_and_checked_against_the_weights(tiny_base, hf_cache, tmp_path, update, code, words):
    repo = f"verity-test/intake-config-{code.replace('_', '-')}-{abs(hash(str(update))) % 10**8}"
    variant_repo(tiny_base.path, tmp_path, hf_cache, repo, config_update=update)
    refused = _refused(repo)
    assert refused.code == code and words in refused.reason


def _header_file(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize(
    "content, words",
    [
        (_header_file(b"[" * 200_000), "nested too deeply"),
        (_header_file(b"{not json"), "unreadable safetensors header"),
        (_header_file(json.dumps({"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 16]}}).encode(),
                      b"\0" * 16), "holds 16 bytes"),
        (_header_file(json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 10**12]}}).encode()),
         "outside its file"),
        (_header_file(json.dumps({"w": {"dtype": "F32", "shape": [True]}}).encode()), "bad shape"),
    ],
)
def test_malformed_safetensors_headers_are_refused(tiny_base, hf_cache, tmp_path, content, words):
    repo = f"verity-test/intake-header-{abs(hash(content)) % 10**8}"
    variant_repo(tiny_base.path, tmp_path, hf_cache, repo, add={"model.safetensors": content})
    refused = _refused(repo)
    assert refused.code == "bad_safetensors" and words in refused.reason


def test_deeply_nested_config_is_refused_not_crashed(tiny_base, hf_cache, tmp_path):
    repo = "verity-test/intake-nested-config"
    variant_repo(tiny_base.path, tmp_path, hf_cache, repo, add={"config.json": "[" * 200_000})
    assert _refused(repo).code == "bad_json"


def test_an_oversized_card_is_not_fetched_but_the_model_is_accepted(tiny_base, hf_cache, tmp_path, monkeypatch):
    from verification import intake

    repo = "verity-test/intake-big-card"
    variant_repo(tiny_base.path, tmp_path, hf_cache, repo, add={"README.md": "---\nlicense: mit\n---\n" + "x" * 5000})
    monkeypatch.setattr(intake, "TEXT_FILE_LIMIT", 2000)  # over the card, under the configs
    result = inspect_source(repo, None, max_bytes=10**9)
    assert "README.md" not in result.download_files and result.card is False
