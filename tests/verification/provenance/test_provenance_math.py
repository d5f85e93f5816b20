"""The pure math of provenance on synthetic tensors and configs (no model needed)."""

from __future__ import annotations

import math

import pytest
import torch

from verification.provenance import configdiff, lowrank
from verification.provenance.distance import layer_key, layer_number


@pytest.fixture(autouse=True)
def one_thread():
    """As check_provenance runs them (see core.torch_threads)."""
    from verification.provenance.core import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def base_matrix() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(128, 256) * 0.02


def lora_delta(rank: int, rows: int = 128, cols: int = 256, scale: float = 0.01, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, rank, generator=generator) * scale) @ (torch.randn(rank, cols, generator=generator) * scale)


def smooth_delta(rows: int = 128, cols: int = 256, decay: float = 0.97, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(cols, rows, generator=generator))
    spectrum = torch.tensor([decay**i for i in range(rows)])
    return (u * spectrum) @ v.T * 0.01


@pytest.mark.parametrize("rank", [1, 4, 8])
def test_float32_lora_merge_has_its_exact_rank(base_matrix, rank):
    result = lowrank.analyse_delta("w", base_matrix + lora_delta(rank), base_matrix, "F32")
    assert result.classification == "low_rank" and result.rank == rank and result.effective_rank <= rank


def test_bfloat16_merge_is_found_above_the_rounding_floor(base_matrix):
    base16 = base_matrix.bfloat16().float()
    merged = (base16 + lora_delta(4)).bfloat16().float()
    stored_bf16 = lowrank.analyse_delta("w", merged, base16, "BF16")
    # Rounding noise holds more than 1% of the energy, so the 99% rank is large, but the floor
    # test still sees rank 4; the same values upcast to float32 are recognised as bf16 precision.
    assert stored_bf16.effective_rank > 4
    assert (stored_bf16.classification, stored_bf16.rank) == ("low_rank", 4)
    upcast = lowrank.analyse_delta("w", merged, base16, "F32")
    assert (upcast.classification, upcast.rank) == ("low_rank", 4)


def test_smooth_full_fine_tune_is_not_low_rank(base_matrix):
    for weight, base, dtype in (
        (base_matrix + smooth_delta(), base_matrix, "F32"),
        ((base_matrix + smooth_delta()).bfloat16().float(), base_matrix.bfloat16().float(), "BF16"),
    ):
        result = lowrank.analyse_delta("w", weight, base, dtype)
        assert result.classification == "full_rank" and result.rank is None


def test_rounding_only_counts_as_unchanged(base_matrix):
    assert lowrank.analyse_delta("w", base_matrix.clone(), base_matrix).classification == "unchanged"
    rerounded = lowrank.analyse_delta("w", base_matrix.bfloat16().float(), base_matrix, "BF16")
    assert rerounded.classification == "unchanged"


def test_sketch_paths_for_wider_matrices(monkeypatch):
    torch.manual_seed(0)
    base = torch.randn(320, 640) * 0.02
    # rank 8: settled by the first small sketch; rank 36: beyond it, by the full randomized SVD
    # (forced for this size by lowering the exact-SVD limit and the sketch size).
    monkeypatch.setattr(lowrank, "EXACT_SVD_MAX_DIM", 128)
    monkeypatch.setattr(lowrank, "RANDOMIZED_RANK", 64)
    for rank in (8, 36):
        result = lowrank.analyse_delta("w", base + lora_delta(rank, 320, 640), base, "F32")
        assert (result.classification, result.rank) == ("low_rank", rank)
    full = lowrank.analyse_delta("w", base + torch.randn(320, 640) * 1e-3, base, "F32")
    assert full.classification == "full_rank" and full.effective_rank is None  # above the 64 computed


def test_energy_rank_and_rounding_energy():
    values = [3.0, 2.0, 1.0, 0.1]
    total = sum(v * v for v in values)
    assert lowrank.energy_rank(values, total, 0.99) == 3
    assert lowrank.energy_rank(values[:2], total, 0.99) is None
    ones = torch.ones(10, 10)  # ulp(1) in bf16 is 2^-7
    assert math.isclose(lowrank.rounding_energy(ones, 8), 100 * (2.0**-7) ** 2 / 12)


def test_summary_needs_most_changed_matrices_low_rank():
    def matrix(classification, rank=None):
        return lowrank.MatrixRank("w", (8, 8), 0.1, classification, rank, rank, 1.0, [])

    merged = lowrank.summarise([matrix("low_rank", 4)] * 3 + [matrix("unchanged")] * 5, 8)
    assert merged.verdict == "low_rank" and merged.rank == 4
    mixed = lowrank.summarise([matrix("low_rank", 4), matrix("full_rank", None), matrix("full_rank", None)], 3)
    assert mixed.verdict == "full_fine_tune"
    assert lowrank.summarise([matrix("unchanged")], 1).verdict == "unchanged"


LLAMA_3_70B = {
    "model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80, "vocab_size": 128256,
    "max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_scaling": None, "torch_dtype": "bfloat16",
}
LLAMA_31_70B = {
    **LLAMA_3_70B, "max_position_embeddings": 131072,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
}


def test_llama3_vs_llama31_config_diff_names_context_and_rope():
    diff = {row["field"]: (row["submitted"], row["base"]) for row in configdiff.config_diff(LLAMA_3_70B, LLAMA_31_70B)}
    assert diff == {
        "max_position_embeddings": (8192, 131072),
        "rope.type": (None, "llama3"),
        "rope.factor": (None, 8.0),
        "rope.low_freq_factor": (None, 1.0),
        "rope.high_freq_factor": (None, 4.0),
        "rope.original_max_position_embeddings": (None, 8192),
    }


def test_rope_spelled_by_two_transformers_versions_is_no_difference():
    old_style = {**LLAMA_31_70B}
    new_style = {key: value for key, value in LLAMA_31_70B.items() if key not in ("rope_theta", "rope_scaling")}
    new_style["rope_parameters"] = {**LLAMA_31_70B["rope_scaling"], "rope_theta": 500000.0}
    new_style["dtype"] = new_style.pop("torch_dtype")
    assert configdiff.config_diff(new_style, old_style) == []
    default = {"rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}
    assert configdiff.config_diff(default, {"rope_theta": 10000}) == []


def test_layer_keys_group_tensors_by_layer():
    assert layer_key("model.layers.12.self_attn.q_proj.weight") == "model.layers.12"
    assert layer_key("transformer.h.3.attn.c_attn.weight") == "transformer.h.3"
    assert layer_key("lm_head.weight") == "lm_head"
    keys = ["lm_head", "model.layers.10", "model.norm", "model.layers.2", "model.embed_tokens"]
    assert sorted(keys, key=layer_number)[:3] == ["model.embed_tokens", "model.layers.2", "model.layers.10"]
