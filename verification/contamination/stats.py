"""Statistics behind the contamination evidence (methods.md §3).

- Held-out gap: g = p_pub − p_held with SE = sqrt(p₁q₁/n₁ + p₂q₂/n₂) (GSM1k, arXiv 2405.00332),
  and the difference-in-differences against the claimed base's own gap, whose SE adds the two
  independent variances.
- Completion probe: paired items (model vs base reproduced), one-sided exact binomial test on the
  discordant pairs (McNemar's exact test, one-sided because only *more* reproduction is evidence).
- Min-K%++: one-sided Mann–Whitney U between benchmark test items and items of the same
  benchmark's train split (same distribution), with AUC = U/(n₁n₂) as the effect size (ours).
- Completion probe against the train split: one-sided Fisher exact test (test rate > train rate).
- Skywork Δ: loss ratios (total NLL / total bytes here; the paper divides by tokens) with
  bootstrap SEs over texts (ours: the paper
  reports point values only); against a base, paired bootstrap SEs of L_model − L_base.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Proportion:
    """k successes out of n (errors already counted as failures by the caller)."""

    k: float
    n: int

    @property
    def p(self) -> float:
        return self.k / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"k": self.k, "n": self.n, "p": self.p, "pct": 100.0 * self.p}


def as_proportion(outcome: Any) -> Proportion | None:
    """Accepts what the pipeline has at hand: a Proportion, a sequence of per-item 0/1 (or
    partial) scores, a mapping with `n` and `correct`/`k` (or `measured` in points / `p`), or an
    object with `n` and `measured`. None (not measured) passes through."""
    if outcome is None:
        return None
    if isinstance(outcome, Proportion):
        return outcome
    if isinstance(outcome, Mapping):
        n = int(outcome["n"])
        for key in ("correct", "k"):
            if key in outcome:
                return Proportion(float(outcome[key]), n)
        if "p" in outcome:
            return Proportion(float(outcome["p"]) * n, n)
        if "measured" in outcome:
            return Proportion(float(outcome["measured"]) / 100.0 * n, n)
        raise ValueError("an outcome mapping needs 'n' and one of 'correct', 'k', 'p', 'measured'")
    if isinstance(outcome, Sequence) and not isinstance(outcome, (str, bytes)):
        scores = [float(x) for x in outcome]
        return Proportion(sum(scores), len(scores))
    if hasattr(outcome, "n") and hasattr(outcome, "measured"):
        n = int(outcome.n)
        return Proportion(float(outcome.measured) / 100.0 * n, n)
    raise TypeError(f"cannot read an outcome from {type(outcome).__name__}")


@dataclass(frozen=True)
class Gap:
    public: Proportion
    heldout: Proportion

    @property
    def gap(self) -> float:
        return self.public.p - self.heldout.p

    @property
    def se(self) -> float:
        return two_proportion_se(self.public, self.heldout)

    def as_dict(self) -> dict[str, Any]:
        return {
            "public": self.public.as_dict(),
            "heldout": self.heldout.as_dict(),
            "gap": self.gap,
            "gap_pct": 100.0 * self.gap,
            "se": self.se,
            "se_pct": 100.0 * self.se,
            "z": safe_z(self.gap, self.se),
        }


def two_proportion_se(a: Proportion, b: Proportion) -> float:
    """sqrt(p₁q₁/n₁ + p₂q₂/n₂). At p ∈ {0, 1} the binomial variance is 0, so each side's
    variance is floored at that of half an item out of n (ours), so 0% vs 0% is not 'certain'."""
    if a.n <= 0 or b.n <= 0:
        raise ValueError("both samples need at least one item")

    def variance(x: Proportion) -> float:
        p = min(max(x.p, 0.5 / x.n), 1 - 0.5 / x.n) if x.n > 1 else 0.5
        return p * (1 - p) / x.n

    return math.sqrt(variance(a) + variance(b))


def safe_z(value: float, se: float) -> float:
    return value / se if se > 0 else 0.0


@dataclass(frozen=True)
class DiffInDiff:
    model: Gap
    base: Gap | None

    @property
    def estimate(self) -> float:
        return self.model.gap - (self.base.gap if self.base else 0.0)

    @property
    def se(self) -> float:
        base_var = self.base.se**2 if self.base else 0.0
        return math.sqrt(self.model.se**2 + base_var)

    @property
    def z(self) -> float:
        return safe_z(self.estimate, self.se)

    @property
    def p_value(self) -> float:
        """One-sided: only a public score *above* held-out is evidence of overfitting."""
        return float(scipy_stats.norm.sf(self.z))

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.as_dict(),
            "base": self.base.as_dict() if self.base else None,
            "did": self.estimate if self.base else None,
            "estimate": self.estimate,
            "estimate_pct": 100.0 * self.estimate,
            "se": self.se,
            "se_pct": 100.0 * self.se,
            "z": self.z,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class PairedExcess:
    """Items reproduced by the model vs by the base on the same items."""

    n: int
    model_rate: float
    base_rate: float | None
    model_only: int
    base_only: int
    p_value: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_excess(model_hits: Sequence[bool], base_hits: Sequence[bool] | None) -> PairedExcess:
    """One-sided exact McNemar: among items where exactly one of the two reproduces, is the model
    the one more often than chance (p = 0.5)? Without a base, the exact binomial test of the hit
    count against a background rate of 1% (ours: question halves are rarely reproduced by chance)."""
    n = len(model_hits)
    model_rate = sum(model_hits) / n if n else 0.0
    if base_hits is None:
        hits = int(sum(model_hits))
        p_value = float(scipy_stats.binomtest(hits, n, 0.01, alternative="greater").pvalue) if n else 1.0
        return PairedExcess(n, model_rate, None, hits, 0, p_value)
    if len(base_hits) != n:
        raise ValueError("model and base must be probed on the same items")
    model_only = sum(1 for m, b in zip(model_hits, base_hits) if m and not b)
    base_only = sum(1 for m, b in zip(model_hits, base_hits) if b and not m)
    discordant = model_only + base_only
    p_value = (
        float(scipy_stats.binomtest(model_only, discordant, 0.5, alternative="greater").pvalue)
        if discordant else 1.0
    )
    return PairedExcess(n, model_rate, sum(base_hits) / n if n else 0.0, model_only, base_only, p_value)


@dataclass(frozen=True)
class RankTest:
    n_members: int
    n_controls: int
    auc: float  # P(member score > control score) + ½ P(tie)
    p_value: float
    median_members: float
    median_controls: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mann_whitney_greater(members: Sequence[float], controls: Sequence[float]) -> RankTest:
    """One-sided Mann–Whitney U: are benchmark-item scores stochastically larger than those of
    control items from the same distribution?"""
    a = np.asarray(members, dtype=float)
    b = np.asarray(controls, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("Mann–Whitney needs items on both sides")
    result = scipy_stats.mannwhitneyu(a, b, alternative="greater")
    return RankTest(
        n_members=len(a),
        n_controls=len(b),
        auc=float(result.statistic) / (len(a) * len(b)),
        p_value=float(result.pvalue),
        median_members=float(np.median(a)),
        median_controls=float(np.median(b)),
    )


@dataclass(frozen=True)
class LossRatio:
    """L = total NLL / total tokens over a set of texts, with a bootstrap SE over texts."""

    loss: float
    n_texts: int
    n_tokens: int
    se: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def loss_ratio(nll_sums: Sequence[float], token_counts: Sequence[int], *, seed: int = 0, n_boot: int = 400) -> LossRatio:
    nll = np.asarray(nll_sums, dtype=float)
    tokens = np.asarray(token_counts, dtype=float)
    if len(nll) == 0 or tokens.sum() <= 0:
        raise ValueError("a loss needs at least one text with tokens")
    loss = float(nll.sum() / tokens.sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(nll), size=(n_boot, len(nll)))
    boot = nll[picks].sum(axis=1) / np.maximum(tokens[picks].sum(axis=1), 1.0)
    return LossRatio(loss, len(nll), int(tokens.sum()), float(boot.std(ddof=1)) if n_boot > 1 else 0.0)


def fisher_greater(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """One-sided Fisher exact test: is set A's hit rate above set B's? (Unpaired: test items
    against train items.)"""
    if n_a <= 0 or n_b <= 0:
        return 1.0
    table = [[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]]
    return float(scipy_stats.fisher_exact(table, alternative="greater").pvalue)


@dataclass(frozen=True)
class LossGap:
    """L_model − L_base over one set of texts (each model's own token counts), with a paired
    bootstrap SE: both losses are recomputed on the same resampled texts, since model and base
    losses on one text move together (ours)."""

    estimate: float
    se: float
    n_texts: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_loss_gap(
    model_rows: Sequence[tuple[float, int]], base_rows: Sequence[tuple[float, int]], *, seed: int = 0, n_boot: int = 400
) -> LossGap:
    if len(model_rows) != len(base_rows) or not model_rows:
        raise ValueError("model and base losses must cover the same texts")
    m_nll, m_tok = (np.asarray(x, dtype=float) for x in zip(*model_rows))
    b_nll, b_tok = (np.asarray(x, dtype=float) for x in zip(*base_rows))
    estimate = float(m_nll.sum() / m_tok.sum() - b_nll.sum() / b_tok.sum())
    picks = np.random.default_rng(seed).integers(0, len(m_nll), size=(n_boot, len(m_nll)))
    boot = m_nll[picks].sum(1) / np.maximum(m_tok[picks].sum(1), 1.0) - b_nll[picks].sum(1) / np.maximum(b_tok[picks].sum(1), 1.0)
    return LossGap(estimate, float(boot.std(ddof=1)), len(m_nll))
