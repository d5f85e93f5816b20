"""The three likelihood/generation probes, each on one loaded model (methods.md §3).

- Completion probe (Glaive post-mortem; BenBench, arXiv 2404.18824): split each question at half
  its tokens, decode greedily about as many tokens as the missing half, compare with the true half
  by normalised exact match and ROUGE-L F1; reproduced = exact or ROUGE-L ≥ 0.8 (ours).
- Min-K%++ (Zhang et al. 2024, building on Min-K% by Shi et al., arXiv 2310.16789): per token
  z_t = (log p(x_t) − μ_t)/σ_t with μ_t, σ_t the mean and s.d. of log p over the vocabulary under
  the model's own next-token distribution; score = mean of the lowest k = 20% of z_t.
- Skywork loss (Skywork-13B report, arXiv 2310.19341, Table 8): per text the summed token NLL, the
  token count and the byte count, so L = total NLL / total bytes (ours; the paper divides by
  tokens) can be formed over any set of texts.

Results are per item and keyed by item position so the caller can pair model and base.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from verification.contamination.lm import ProbeModel, TokenStats

ROUGE_L_REPRODUCED = 0.8  # ours (methods.md §3)
MIN_K_FRACTION = 0.2
# A continuation budget a little above the missing half, so a tokenisation difference at the
# boundary does not cut a reproduced half short.
EXTRA_NEW_TOKENS = 2


def normalise(text: str) -> str:
    """Lowercase, NFKC, punctuation dropped, whitespace collapsed (normalised exact match)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


_ROUGE = None


def rouge_l_f1(prediction: str, reference: str) -> float:
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    if not reference.strip():
        return 0.0
    return float(_ROUGE.score(reference, prediction)["rougeL"].fmeasure)


@dataclass(frozen=True)
class Completion:
    prefix: str
    truth: str
    output: str
    exact: bool
    rouge_l: float

    @property
    def reproduced(self) -> bool:
        return self.exact or self.rouge_l >= ROUGE_L_REPRODUCED


def completion_probe(model: ProbeModel, questions: Sequence[str]) -> list[Completion]:
    """Greedy continuation of each question's first half, compared with its true second half."""
    splits = [model.split_at_half(q) for q in questions]
    prompts = [prompt for prompt, _ in splits]
    budgets = [len(truth) + EXTRA_NEW_TOKENS for _, truth in splits]
    continuations = model.greedy_continuations(prompts, budgets)
    results = []
    for (prompt, truth_ids), new_ids in zip(splits, continuations):
        truth = model.decode(truth_ids)
        # Compare like with like: the output cut to the truth's length in words (the extra
        # tokens only guard the boundary).
        output_full = model.decode(new_ids)
        output_words = normalise(output_full).split()
        truth_norm = normalise(truth)
        output_cut = " ".join(output_words[: len(truth_norm.split())])
        results.append(Completion(
            prefix=model.decode(prompt),
            truth=truth,
            output=output_full,
            exact=bool(truth_norm) and output_cut == truth_norm,
            rouge_l=rouge_l_f1(output_cut, truth_norm),
        ))
    return results


def min_k_pp_score(stats: TokenStats, k: float = MIN_K_FRACTION) -> float:
    """Mean of the lowest k·T token z-scores (at least one token). Higher = more 'seen'."""
    if stats.n_tokens == 0:
        return float("nan")
    sigma = np.maximum(stats.sigma, 1e-6)
    z = (stats.logprob - stats.mu) / sigma
    count = max(1, int(math.ceil(k * len(z))))
    return float(np.sort(z)[:count].mean())


def min_k_pp_scores(model: ProbeModel, texts: Sequence[str], k: float = MIN_K_FRACTION) -> list[float]:
    return [min_k_pp_score(s, k) for s in model.token_stats(texts)]


@dataclass(frozen=True)
class TextLoss:
    nll_sum: float
    n_tokens: int
    n_bytes: int  # UTF-8 bytes of the predicted tokens (all but the first)


def text_losses(model: ProbeModel, texts: Sequence[str]) -> list[TextLoss]:
    """Per text: summed NLL, predicted tokens and their bytes. Losses per byte do not depend on
    how well the tokenizer compresses a set (ours: a tokenizer fitted to text that includes a
    benchmark's train split packs train items into fewer, costlier tokens)."""
    stats = model.token_stats(texts)
    return [
        TextLoss(s.nll_sum, s.n_tokens, len(model.decode(model.encode(text)[1:]).encode("utf-8")))
        for s, text in zip(stats, texts)
    ]
