"""LoRA signature: is the weight delta to the base low-rank?

A merged LoRA writes W = W_b + (α/r)·B·A with B ∈ R^{m×r}, A ∈ R^{r×n}: the delta Δ = W − W_b,
computed in float32, has exactly r non-zero singular values, and the rest sit at the *rounding
floor* of the dtype the merged weights were stored in (float32 ~1e-7 relative, bfloat16 ~4e-3).
A full fine-tune's delta has a spectrum that decays smoothly (methods.md §4).

Per matrix we report the effective rank *(ours)*: the smallest k whose top-k singular values hold
99% of ‖Δ‖_F². What decides "low rank r" is the floor itself, not the 99% rank (a LoRA merged in
bfloat16 with a small update can leave more than 1% of the energy in rounding noise, and a full
fine-tune with a concentrated update has a small 99% rank but no floor):

- rounding floor: storing a value x with p significand bits moves it by up to half a spacing
  ulp(x) = 2^(⌊log2|x|⌋ − p + 1), uniformly, i.e. with variance ulp(x)²/12. Summed over the stored
  weights this gives the energy E_round of the rounding noise in Δ, computed from the values
  themselves. Δ is low-rank r when the energy left after its top r singular values is at most
  FLOOR_FACTOR (2×, *ours*) × E_round, for the smallest such r ≤ the low-rank limit (r = 0: only
  rounding changed, the matrix counts as unchanged). The precision is that of the stored dtype, or
  bfloat16's when float32 values all have zero low 16 bits (bf16 weights upcast to fp32, as
  Reflection's fp32 upload was);
- cliff: failing that, a drop s_r / s_{r+1} ≥ CLIFF_RATIO (20×, *ours*) at r ≤ the limit still
  marks the signal falling to a floor of unknown precision; a smooth spectrum never drops that much
  between neighbours.
A model's delta is "low-rank (LoRA merge, rank ≈ r)" when at least 75% *(ours)* of its changed
matrices are low-rank; r is the most common rank among them. Unchanged matrices (a LoRA that did
not target them) are counted apart.

Cost: a randomized sketch of the top FIRST_LOOK_RANK values first (settles LoRAs up to rank 32);
failing that, exact singular values (torch.linalg.svdvals) up to EXACT_SVD_MAX_DIM, above it the top
RANDOMIZED_RANK values by randomized SVD (Halko et al., torch.svd_lowrank), which recovers an
exactly low-rank matrix's spectrum; the total energy is exact either way. For very large models
only a sample of layers is analysed (all matrices of evenly spaced layers).

Memory: a matrix's reductions (energy, norm, rounding floor, stored precision) run over slices of
SLICE_ELEMENTS, so the float64 temporaries are a few MB whatever the matrix; what a matrix costs
is the two weights and their delta in float32 (3x the matrix: 2.8 GB for a 70B model's largest
MLP matrix, against the 280 GB of the two models).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

ENERGY = 0.99
CLIFF_RATIO = 20.0
FLOOR_FACTOR = 2.0
# Significand bits p (implicit bit included) of each safetensors float dtype.
DTYPE_PRECISION = {"F64": 53, "F32": 24, "BF16": 8, "F16": 11, "F8_E4M3": 4, "F8_E5M2": 3}
LOW_RANK_FRACTION = 0.75
EXACT_SVD_MAX_DIM = 1024
RANDOMIZED_RANK = 256
FIRST_LOOK_RANK = 33
# Relative ‖Δ‖_F/‖W_b‖_F at or below which a matrix is unchanged without further analysis.
UNCHANGED_RELATIVE = 1e-7
SLICE_ELEMENTS = 1 << 18  # 2 MB per float64 temporary


def _slices(tensor) -> Iterator:
    """Consecutive 1-D views of at most SLICE_ELEMENTS elements (no copy of a contiguous tensor)."""
    flat = tensor.reshape(-1)
    for start in range(0, flat.numel(), SLICE_ELEMENTS):
        yield flat[start : start + SLICE_ELEMENTS]


def squared_norm(tensor) -> float:
    """‖tensor‖_F², accumulated in float64 slice by slice."""
    import torch

    total = 0.0
    for piece in _slices(tensor):
        wide = piece.double()
        total += float(torch.dot(wide, wide))
    return total


def low_rank_limit(shape: tuple[int, ...]) -> int:
    """Largest rank still called "low": an eighth of the smaller side *(ours)*, capped by the
    randomized SVD's reach. Typical LoRA ranks (4-256) on 4096-8192 wide models are far below."""
    return max(1, min(min(shape) // 8, RANDOMIZED_RANK - 1))


def singular_values(delta, top: int | None = None) -> tuple[list[float], bool]:
    """Descending singular values of a 2-D float32 tensor; the bool says whether all are present.

    With `top`, only the leading `top` values by a randomized sketch (cheap first look)."""
    import torch

    smaller = min(delta.shape)
    if top is None and smaller <= EXACT_SVD_MAX_DIM:
        values = torch.linalg.svdvals(delta.double() if smaller <= 256 else delta)
        return [float(v) for v in values], True
    wanted = min(top or RANDOMIZED_RANK, smaller)
    torch.manual_seed(0)  # deterministic sketch
    _, values, _ = torch.svd_lowrank(delta, q=min(wanted + 10, smaller), niter=4)
    return [float(v) for v in values[:wanted]], False


def energy_rank(values: list[float], total_energy: float, energy: float = ENERGY) -> int | None:
    """Smallest k with Σ_{i≤k} s_i² ≥ energy·total; None when the values given do not reach it."""
    if total_energy <= 0:
        return 0
    running = 0.0
    for k, value in enumerate(values, start=1):
        running += value * value
        if running >= energy * total_energy * (1 - 1e-12):
            return k
    return None


def find_cliff(values: list[float], limit: int) -> tuple[int | None, float]:
    """(k, s_k/s_{k+1}) of the largest drop among k ≤ limit; k=None when there is no next value."""
    best_k, best_ratio = None, 1.0
    for k in range(1, min(limit, len(values) - 1) + 1):
        upper, lower = values[k - 1], values[k]
        ratio = math.inf if lower <= 0 < upper else (upper / lower if lower > 0 else 1.0)
        if ratio > best_ratio:
            best_k, best_ratio = k, ratio
    return best_k, best_ratio


@dataclass
class MatrixRank:
    tensor: str
    shape: tuple[int, ...]
    relative_delta: float
    classification: str  # unchanged | low_rank | full_rank
    effective_rank: int | None  # None: above the values computed (randomized, > RANDOMIZED_RANK)
    rank: int | None  # the LoRA rank when low_rank
    cliff_ratio: float
    top_singular_values: list[float]

    def as_dict(self) -> dict:
        return {
            "tensor": self.tensor,
            "shape": list(self.shape),
            "relative_delta": round(self.relative_delta, 6),
            "classification": self.classification,
            "effective_rank": self.effective_rank,
            "rank": self.rank,
            "cliff_ratio": round(self.cliff_ratio, 2) if math.isfinite(self.cliff_ratio) else 1e308,
            "top_singular_values": [float(f"{v:.4g}") for v in self.top_singular_values],
        }


def storage_precision(stored_dtype: str, weight) -> int:
    """Significand bits the values were really stored with (bf16 upcast to fp32 detected)."""
    import torch

    precision = DTYPE_PRECISION.get(stored_dtype.upper(), 24)
    if stored_dtype.upper() == "F32" and weight.dtype == torch.float32 and weight.numel():
        if all(bool(((piece.view(torch.int32) & 0xFFFF) == 0).all()) for piece in _slices(weight.contiguous())):
            precision = DTYPE_PRECISION["BF16"]
    return precision


def rounding_energy(weight, precision: int) -> float:
    """Expected ‖rounding error‖_F² of storing `weight` with `precision` significand bits."""
    import torch

    total = 0.0
    for piece in _slices(weight):
        wide = piece.double()
        _, exponent = torch.frexp(wide)  # x = m·2^e, m ∈ [0.5, 1): ⌊log2|x|⌋ = e − 1
        ulp = torch.ldexp(torch.ones_like(wide), exponent - precision)
        ulp = torch.where(wide == 0, torch.zeros_like(ulp), ulp)
        total += float((ulp**2).sum())
    return total / 12.0


def floor_rank(values: list[float], total_energy: float, floor_energy: float, limit: int) -> int | None:
    """Smallest r ≤ limit whose remaining energy is at the rounding floor; None if there is none."""
    remaining = total_energy
    for r in range(0, min(limit, len(values)) + 1):
        if r:
            remaining -= values[r - 1] ** 2
        if remaining <= FLOOR_FACTOR * floor_energy:
            return r
    return None


def analyse_delta(tensor_name: str, weight, base_weight, stored_dtype: str = "F32") -> MatrixRank:
    """Classify Δ = weight − base_weight (2-D float32 tensors of equal shape); `stored_dtype` is the
    safetensors dtype the submitted weight was stored in."""
    delta = weight - base_weight
    total = squared_norm(delta)
    base_norm = math.sqrt(squared_norm(base_weight))
    relative = math.sqrt(total) / base_norm if base_norm > 0 else (0.0 if total == 0 else math.inf)
    shape = tuple(delta.shape)
    floor_energy = rounding_energy(weight, storage_precision(stored_dtype, weight))
    if relative <= UNCHANGED_RELATIVE or total <= FLOOR_FACTOR * floor_energy:
        return MatrixRank(tensor_name, shape, relative, "unchanged", 0, None, 1.0, [])
    limit = low_rank_limit(shape)
    rank = None
    if min(shape) > 256 and limit > FIRST_LOOK_RANK:
        # Most LoRAs have r ≤ 32: a small sketch settles them for a tenth of the cost.
        values, complete = singular_values(delta, top=FIRST_LOOK_RANK)
        rank = floor_rank(values, total, floor_energy, FIRST_LOOK_RANK - 1)
    if rank is None:
        values, complete = singular_values(delta)
        rank = floor_rank(values, total, floor_energy, limit)
    del delta
    k99 = energy_rank(values, total)
    cliff_k, cliff_ratio = find_cliff(values, limit)
    if rank is None and cliff_k is not None and cliff_ratio >= CLIFF_RATIO:
        rank = cliff_k
    low = rank is not None and rank > 0
    return MatrixRank(
        tensor_name,
        shape,
        relative,
        "low_rank" if low else "full_rank",
        k99 if (k99 is not None or complete) else None,
        rank if low else None,
        cliff_ratio,
        values[: min(len(values), (rank or 0) + 3, 12)] if low else values[:8],
    )


@dataclass
class LoraVerdict:
    verdict: str  # low_rank | full_fine_tune | unchanged | not_analysed
    rank: int | None
    label: str
    matrices: list[MatrixRank]
    analysed: int
    total: int

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "rank": self.rank,
            "label": self.label,
            "analysed": self.analysed,
            "total": self.total,
            "changed": sum(1 for m in self.matrices if m.classification != "unchanged"),
            "low_rank_matrices": sum(1 for m in self.matrices if m.classification == "low_rank"),
            "matrices": [m.as_dict() for m in self.matrices],
            "thresholds": {
                "energy": ENERGY,
                "cliff_ratio": CLIFF_RATIO,
                "floor_factor": FLOOR_FACTOR,
                "low_rank_fraction": LOW_RANK_FRACTION,
                "low_rank_limit": "min(m, n) // 8",
            },
        }


def summarise(matrices: list[MatrixRank], total: int) -> LoraVerdict:
    changed = [m for m in matrices if m.classification != "unchanged"]
    if not matrices:
        return LoraVerdict("not_analysed", None, "not analysed (no comparable weight matrices)", [], 0, total)
    if not changed:
        return LoraVerdict("unchanged", None, "unchanged: the weight matrices equal the base's", matrices, len(matrices), total)
    low = [m for m in changed if m.classification == "low_rank"]
    if len(low) >= LOW_RANK_FRACTION * len(changed):
        rank = Counter(m.rank for m in low).most_common(1)[0][0]
        label = f"low-rank delta (LoRA merge, rank ≈ {rank})"
        return LoraVerdict("low_rank", rank, label, matrices, len(matrices), total)
    ranks = [m.effective_rank for m in changed if m.effective_rank is not None]
    typical = sorted(ranks)[len(ranks) // 2] if ranks else None
    label = "full fine-tune" + (f" (median 99%-energy rank {typical})" if typical is not None else "")
    return LoraVerdict("full_fine_tune", None, label, matrices, len(matrices), total)
