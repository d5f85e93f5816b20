"""Provenance on real tiny models: base A = tiny_base, base B = tiny_other_base (same architecture
and tokenizer, different seed and data); the variants come from this folder's conftest."""

from __future__ import annotations

import json
import shutil

import pytest

from verification.provenance import ProvenanceInputError, check_provenance, shape_signature
from verification.provenance.weights import WeightIndex

from .conftest import LORA_RANK, NEW_TOKENS

A, B = "verity-test/tiny-base", "verity-test/tiny-other"


def kinds(flags: list[dict]) -> list[str]:
    return sorted(flag["kind"] for flag in flags)


def run(model_dir, claimed_dir, claimed_name, candidates=None, training="full"):
    section, flags = check_provenance(
        model_dir, claimed_dir, candidates=candidates or {}, claimed_training=training, base_name=claimed_name
    )
    json.dumps(section)  # the report stores it as JSON
    for flag in flags:
        assert set(flag) == {"kind", "severity", "benchmark", "summary", "evidence"}
        assert flag["benchmark"] is None and flag["summary"]
        json.dumps(flag)
    return section, flags


def test_full_fine_tune_claiming_its_base_raises_no_flag(provenance_variants, tiny_base, tiny_other_base):
    section, flags = run(provenance_variants["full-ft"], tiny_base.path, A, {B: tiny_other_base.path})
    assert flags == []
    weights = section["weights"]
    assert weights["verdict"] == "matches_claimed" and weights["nearest"] == A
    assert all(row["nearest"] == A for row in weights["per_layer"])
    # A fine-tune: small distance and cosine near 1 to A; sqrt(2)-ish and ~0 to an independent model.
    by_name = {c["name"]: c for c in weights["candidates"]}
    assert by_name[A]["median_relative_distance"] < 0.5 and by_name[A]["median_cosine"] > 0.9
    assert 1.2 < by_name[B]["median_relative_distance"] < 1.7 and abs(by_name[B]["median_cosine"]) < 0.1
    # ... and a full fine-tune is not reported as low rank.
    assert section["lora"]["verdict"] == "full_fine_tune"
    assert section["lora"]["low_rank_matrices"] == 0
    assert section["config_diff"] == []
    assert section["new_tokens"]["n_added"] == 0


def test_claiming_the_other_base_names_the_nearer_one(provenance_variants, tiny_base, tiny_other_base):
    section, flags = run(provenance_variants["full-ft"], tiny_other_base.path, B, {A: tiny_base.path})
    assert kinds(flags) == ["base_model_mismatch"]
    flag = flags[0]
    assert flag["severity"] == "critical"
    assert A in flag["summary"] and B in flag["summary"]
    assert flag["evidence"]["nearest"] == A and flag["evidence"]["challenger"]["name"] == A
    assert flag["evidence"]["challenger"]["nearer_in"] == flag["evidence"]["challenger"]["of"] > 0
    assert {row["nearest"] for row in flag["evidence"]["per_layer"]} == {A}
    assert section["weights"]["verdict"] == "other_base_nearer"
    # The delta analyses run against the base the weights really come from.
    assert section["compared_with"] == A and section["lora"]["verdict"] == "full_fine_tune"


def test_mismatch_when_the_wrongly_claimed_base_is_the_only_one_known(provenance_variants, tiny_other_base):
    section, flags = run(provenance_variants["full-ft"], tiny_other_base.path, B, {})
    assert kinds(flags) == ["base_model_mismatch"]
    assert flags[0]["severity"] == "critical"
    assert section["weights"]["verdict"] == "not_derived"
    assert section["weights"]["nearest"] is None  # no known base it derives from
    assert "not derived" in flags[0]["summary"]
    assert section["lora"]["verdict"] == "not_analysed"


def test_merged_lora_claimed_as_full_fine_tune(provenance_variants, tiny_base, tiny_other_base):
    section, flags = run(provenance_variants["lora-merge"], tiny_base.path, A, {B: tiny_other_base.path})
    assert kinds(flags) == ["lora_merge"]
    flag = flags[0]
    assert flag["severity"] == "info" and flag["evidence"]["rank"] == LORA_RANK
    lora = section["lora"]
    assert lora["verdict"] == "low_rank" and lora["rank"] == LORA_RANK
    assert lora["label"] == f"low-rank delta (LoRA merge, rank ≈ {LORA_RANK})"
    # peft targeted every linear layer: all 14 matrices changed, each exactly rank 4.
    assert lora["changed"] == lora["analysed"] == 14
    assert {m["rank"] for m in lora["matrices"]} == {LORA_RANK}


def test_merged_lora_honestly_declared_is_reported_without_flag(provenance_variants, tiny_base):
    section, flags = run(provenance_variants["lora-merge"], tiny_base.path, A, training="lora")
    assert flags == []
    assert section["lora"]["rank"] == LORA_RANK


def test_untrained_added_tokens_are_named(provenance_variants, tiny_base, tiny_other_base):
    section, flags = run(provenance_variants["tokens-raw"], tiny_base.path, A, {B: tiny_other_base.path})
    assert kinds(flags) == ["untrained_tokens"]
    flag = flags[0]
    assert flag["severity"] == "warning"
    assert [t["token"] for t in flag["evidence"]["tokens"]] == list(NEW_TOKENS)
    assert all(token in flag["summary"] for token in NEW_TOKENS)
    for token in flag["evidence"]["tokens"]:
        # resize_token_embeddings' mean initialisation, in both the embedding and lm_head
        assert set(token["reasons"]) == {"model.embed_tokens.weight", "lm_head.weight"}
        assert all("mean_init" in reasons for reasons in token["reasons"].values())
    fields = {row["field"] for row in section["config_diff"]}
    assert {"vocab_size", "tokenizer.added_tokens (only on one side)"} <= fields
    # Added rows do not disturb the weight comparison (shared rows are compared).
    assert section["weights"]["verdict"] == "matches_claimed"


def test_added_tokens_after_training_raise_no_flag(provenance_variants, tiny_base):
    section, flags = run(provenance_variants["tokens-trained"], tiny_base.path, A)
    assert flags == []
    assert section["new_tokens"]["n_added"] == len(NEW_TOKENS)
    assert section["new_tokens"]["untrained"] == []


def test_one_zeroed_row_among_trained_tokens_is_the_only_one_named(provenance_variants, tiny_base, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    model_dir = tmp_path / "one-zero"
    shutil.copytree(provenance_variants["tokens-trained"], model_dir)
    tensors = load_file(model_dir / "model.safetensors")
    zeroed_id = json.loads((model_dir / "tokenizer.json").read_text())["added_tokens"][-1]["id"]
    tensors["model.embed_tokens.weight"][zeroed_id] = torch.zeros(tensors["model.embed_tokens.weight"].shape[1])
    save_file(tensors, model_dir / "model.safetensors", metadata={"format": "pt"})
    _, flags = run(model_dir, tiny_base.path, A)
    assert kinds(flags) == ["untrained_tokens"]
    assert [(t["id"], t["reasons"]) for t in flags[0]["evidence"]["tokens"]] == [
        (zeroed_id, {"model.embed_tokens.weight": ["zero"]})
    ]


def test_edited_context_and_rope_show_in_the_diff_while_weights_decide(provenance_variants, tiny_base):
    section, flags = run(provenance_variants["long-context"], tiny_base.path, A)
    diff = {row["field"]: (row["submitted"], row["base"], row["group"]) for row in section["config_diff"]}
    assert diff["max_position_embeddings"] == (8192, 1024, "context")
    assert diff["rope.type"] == ("llama3", None, "rope")
    assert diff["rope.factor"] == (8.0, None, "rope")
    assert diff["rope.original_max_position_embeddings"][0] == 1024
    assert "rope.theta" not in diff  # unchanged, spelled the same after normalisation
    assert flags == [] and section["weights"]["verdict"] == "matches_claimed"


def test_section_is_compact_and_carries_hygiene_from_intake(provenance_variants, tiny_base, tiny_other_base):
    section, _ = run(provenance_variants["full-ft"], tiny_base.path, A, {B: tiny_other_base.path})
    assert len(json.dumps(section)) < 20_000
    hygiene = section["hygiene"]
    assert hygiene["format"] == "safetensors" and hygiene["dtype"] == "F32" and hygiene["shards"] == 1
    assert hygiene["bytes"] == (provenance_variants["full-ft"] / "model.safetensors").stat().st_size
    given = {"format": "safetensors", "dtype": "BF16", "license": "apache-2.0"}
    section, _ = check_provenance(
        provenance_variants["full-ft"], tiny_base.path, candidates={}, claimed_training=None, base_name=A, intake=given
    )
    assert section["hygiene"] == given  # reused from intake, not recomputed


def rewritten_copy(source, target, edit):
    """A copy of a model folder whose tensors went through `edit(dict) -> dict`."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    tensors = edit(load_file(target / "model.safetensors"))
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    return target


def test_unusable_candidates_are_recorded_not_fatal(provenance_variants, tiny_base, tmp_path):
    def narrower_mlp(tensors):
        return {name: (t[:, :200].contiguous() if name.endswith("down_proj.weight") else t) for name, t in tensors.items()}

    wider = rewritten_copy(tiny_base.path, tmp_path / "wider", narrower_mlp)
    empty = tmp_path / "empty"
    empty.mkdir()
    section, flags = run(provenance_variants["full-ft"], tiny_base.path, A, {"wider": wider, "empty": empty})
    assert flags == []
    skipped = {c["name"]: c["skipped"] for c in section["weights"]["candidates"]}
    assert "differ in shape" in skipped["wider"]
    assert "no safetensors weights" in skipped["empty"]
    assert skipped[A] is None
    # Claiming a base whose matrices have other shapes is a mismatch, naming the real base.
    section, flags = run(provenance_variants["full-ft"], wider, "org/wider", {A: tiny_base.path})
    assert kinds(flags) == ["base_model_mismatch"]
    assert "differ in shape" in flags[0]["summary"] and A in flags[0]["summary"]
    assert section["compared_with"] == A


def test_hostile_or_broken_model_directories_get_clear_errors(provenance_variants, tiny_base, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(provenance_variants["full-ft"] / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ProvenanceInputError, match="pytorch_model.bin.*never loaded"):
        check_provenance(pickled, tiny_base.path, candidates={}, claimed_training=None, base_name=A)

    truncated = tmp_path / "truncated"
    shutil.copytree(provenance_variants["full-ft"], truncated)
    (truncated / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(ProvenanceInputError, match="header length"):
        check_provenance(truncated, tiny_base.path, candidates={}, claimed_training=None, base_name=A)

    no_config = tmp_path / "no-config"
    shutil.copytree(provenance_variants["full-ft"], no_config)
    (no_config / "config.json").unlink()
    with pytest.raises(ProvenanceInputError, match="no config.json"):
        check_provenance(no_config, tiny_base.path, candidates={}, claimed_training=None, base_name=A)

    escaping = tmp_path / "escaping-index"
    shutil.copytree(provenance_variants["full-ft"], escaping)
    (escaping / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../../etc/passwd"}}))
    with pytest.raises(ProvenanceInputError, match="outside the model"):
        WeightIndex(escaping)


def test_shape_signature_ignores_vocabulary_growth(provenance_variants, tiny_base, tiny_other_base, tmp_path):
    signature = shape_signature(tiny_base.path)
    assert len(signature) == 64
    assert shape_signature(tiny_other_base.path) == signature
    assert shape_signature(provenance_variants["tokens-raw"]) == signature

    def extra_layer(tensors):
        copied = {name.replace("layers.1.", "layers.2."): t.clone() for name, t in tensors.items() if "layers.1." in name}
        return {**tensors, **copied}

    deeper = rewritten_copy(tiny_base.path, tmp_path / "deeper", extra_layer)
    assert shape_signature(deeper) != signature


def test_registry_hook_runs_from_a_check_context(provenance_variants, tiny_base, tiny_other_base):
    from verification.checks import CheckContext, ModelRef, run_checks
    from verification.claims import ClaimsDoc
    from verification.provenance.check import check_provenance as hook

    context = CheckContext(
        model=ModelRef("local", None, None, provenance_variants["lora-merge"]),
        base=ModelRef(B, B, tiny_other_base.sha, tiny_other_base.path),
        candidates=[ModelRef(A, A, tiny_base.sha, tiny_base.path), ModelRef("org/unfetched", "org/unfetched", None, None)],
        claims=ClaimsDoc(base_model=B, training="full"),
        intake={"format": "safetensors", "dtype": "F32"},
        benchmarks={},
        base_benchmarks=None,
        endpoint_url=None,
        endpoint_model=None,
        datasets_dir=None,
        backend_name="none",
    )
    sections, flags, log = run_checks(context, checks=[hook])
    assert log[0]["status"] == "ok"
    assert kinds(flags) == ["base_model_mismatch", "lora_merge"]
    provenance = sections["provenance"]
    assert provenance["weights"]["nearest"] == A and provenance["lora"]["rank"] == LORA_RANK
    assert provenance["weights"]["unresolved_candidates"] == ["org/unfetched"]
    assert provenance["hygiene"] == {"format": "safetensors", "dtype": "F32"}
