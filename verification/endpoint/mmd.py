"""Model Equality Testing: a two-sample test on (prompt, completion) samples.

Gao, Liang, Guestrin, "Model Equality Testing: Which Model Is This API Serving?"
(arXiv 2410.20247). Kernel between two (prompt, completion) pairs:

    k((p, c), (p', c')) = 1[p = p'] · #{i < L : c_i = c'_i} / L

with completions truncated/padded to L characters (the padding symbol equals itself, so
k(x, x) = 1). Statistic: the unbiased MMD²

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / (n(n-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1)) − 2 Σ k(x_i, y_j) / (nm)

p-value by permutation. The prompts are a fixed design (each prompt sampled on both sides), so
labels are permuted *within* each prompt (stratified permutation), which is exchangeable under
the null "both sides sample the same conditional distribution" whatever the prompt mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PAD = -1
DEFAULT_MAX_CHARS = 1000  # L cap (ours): long completions add cost, their tails add little power


@dataclass(frozen=True)
class MMDResult:
    statistic: float
    p_value: float
    n_endpoint: int
    n_weights: int
    n_prompts: int
    n_permutations: int
    length: int  # L

    def as_dict(self) -> dict:
        return asdict(self)


def encode(completions: Sequence[str], length: int) -> np.ndarray:
    """Code points, truncated/padded to `length` with PAD."""
    out = np.full((len(completions), length), PAD, dtype=np.int32)
    for row, text in enumerate(completions):
        codes = [ord(ch) for ch in text[:length]]
        out[row, : len(codes)] = codes
    return out


def positional_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of equal positions between every row of `a` and every row of `b`."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    return (a[:, None, :] == b[None, :, :]).mean(axis=2)


def _block_sums(kernel: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For label rows (P × m, 1 = endpoint side): Σ_xx, Σ_yy, Σ_xy over one prompt's block
    (kernel has a zero diagonal, so i = j never counts)."""
    x = labels.astype(np.float64)
    y = 1.0 - x
    kx = x @ kernel
    ky = y @ kernel
    return (kx * x).sum(axis=1), (ky * y).sum(axis=1), (kx * y).sum(axis=1)


def mmd_test(
    endpoint_samples: Sequence[Sequence[str]],
    weights_samples: Sequence[Sequence[str]],
    *,
    n_permutations: int = 1000,
    seed: int = 0,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> MMDResult:
    """`endpoint_samples[g]` and `weights_samples[g]` are the completions for prompt g.
    Failed requests must be left out by the caller (missing data is never a sample)."""
    if len(endpoint_samples) != len(weights_samples):
        raise ValueError("both sides need one list of completions per prompt")
    n_x = sum(len(s) for s in endpoint_samples)
    n_y = sum(len(s) for s in weights_samples)
    if n_x < 2 or n_y < 2:
        raise ValueError(f"need at least 2 samples per side, got {n_x} and {n_y}")
    longest = max((len(c) for side in (endpoint_samples, weights_samples) for s in side for c in s), default=0)
    length = max(1, min(max_chars, longest))

    blocks: list[tuple[np.ndarray, np.ndarray]] = []  # (kernel with zero diagonal, observed labels)
    for xs, ys in zip(endpoint_samples, weights_samples):
        if len(xs) + len(ys) == 0:
            continue
        codes = encode(list(xs) + list(ys), length)
        kernel = positional_kernel(codes, codes)
        np.fill_diagonal(kernel, 0.0)
        labels = np.array([1] * len(xs) + [0] * len(ys), dtype=np.int8)
        blocks.append((kernel, labels))

    def statistic(sums: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        xx, yy, xy = sums
        return xx / (n_x * (n_x - 1)) + yy / (n_y * (n_y - 1)) - 2.0 * xy / (n_x * n_y)

    observed_sums = [np.zeros(1), np.zeros(1), np.zeros(1)]
    perm_sums = [np.zeros(n_permutations), np.zeros(n_permutations), np.zeros(n_permutations)]
    rng = np.random.default_rng(seed)
    for kernel, labels in blocks:
        for total, part in zip(observed_sums, _block_sums(kernel, labels[None, :])):
            total += part
        # Each row: this prompt's labels shuffled (same counts per side).
        order = np.argsort(rng.random((n_permutations, labels.size)), axis=1)
        shuffled = labels[order]
        for total, part in zip(perm_sums, _block_sums(kernel, shuffled)):
            total += part
    observed = float(statistic(tuple(observed_sums))[0])
    permuted = statistic(tuple(perm_sums))
    # +1 in numerator and denominator: the observed labelling is one of the permutations, and
    # a p-value of exactly 0 is never reported.
    p_value = float((1 + np.sum(permuted >= observed - 1e-12)) / (1 + n_permutations))
    return MMDResult(
        statistic=observed,
        p_value=p_value,
        n_endpoint=n_x,
        n_weights=n_y,
        n_prompts=len(blocks),
        n_permutations=n_permutations,
        length=length,
    )
