"""Shared scoring for multiple-choice benchmarks, by log-likelihood (no generation, no judge).

- Letter choice (MMLU, GPQA): one context, the letters " A".." D" as continuations, read from a
  single forward pass through `Backend.choice_logprobs`; the prediction is the argmax.
- Continuation choice (ARC, TruthfulQA): log P(" " + choice text | context) per choice; `acc` is
  the argmax of the summed log-likelihood, `acc_norm` the argmax after dividing by the
  continuation's length in characters (lm-eval's acc_norm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from verification.benchmarks.base import BenchmarkSpec, Item, ItemScore, Request, Response
from verification.records import ChoiceScores, Loglikelihood, LoglikelihoodRequest

LETTERS = "ABCDEFGHIJ"
# A log-probability that exp() turns into exactly 0.0: the oracle's "impossible" choice.
IMPOSSIBLE_LOGPROB = -1.0e4


def argmax(values: Sequence[float]) -> int | None:
    """Index of the single largest finite value; None when none is finite or when the largest
    is shared. A tie expresses no preference, so it is never credited: with "first wins", equal
    scores would always pick the first choice, which is the true one in every TruthfulQA MC1
    item."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite or finite.count(max(finite)) > 1:
        return None
    return list(values).index(max(finite))


def require_valid_logprobs(values: Sequence[float]) -> None:
    """NaN or +inf is a backend fault (fp16 overflow, a broken kernel), not the model's answer:
    raising makes the runner count the item in n_errors instead of as a wrong answer. -inf stays
    a legitimate "impossible" score."""
    if any(math.isnan(value) or value == math.inf for value in values):
        raise ValueError("the backend returned a NaN or +inf log-probability")


class LetterChoiceSpec(BenchmarkSpec):
    request_kind = "choice"

    def gold_index(self, item: Item) -> int:
        return int(item.data["gold"])

    def gold_text(self, item: Item) -> str:
        return LETTERS[self.gold_index(item)]

    def score(self, item: Item, requests: list[Request], responses: list[Response]) -> ItemScore:
        response = responses[0]
        assert isinstance(response, ChoiceScores)
        logprobs = list(response.logprobs)
        n_choices = len(requests[0].choices)  # type: ignore[union-attr]
        if len(logprobs) != n_choices:
            raise ValueError(f"backend returned {len(logprobs)} scores for {n_choices} choices")
        require_valid_logprobs(logprobs)
        chosen = argmax(logprobs)
        if chosen is None:
            return ItemScore(False, 0.0, None, "", unparsed=True, details={"logprobs": logprobs})
        correct = chosen == self.gold_index(item)
        return ItemScore(correct, float(correct), LETTERS[chosen], LETTERS[chosen], details={"logprobs": logprobs})

    def gold_responses(self, item: Item, requests: list[Request]) -> list[Response]:
        n_choices = len(requests[0].choices)  # type: ignore[union-attr]
        gold = self.gold_index(item)
        return [ChoiceScores([0.0 if i == gold else IMPOSSIBLE_LOGPROB for i in range(n_choices)])]


class ContinuationChoiceSpec(BenchmarkSpec):
    """One LoglikelihoodRequest per choice; subclasses say which choices are true."""

    request_kind = "loglikelihood"

    def choices(self, item: Item) -> list[str]:
        return list(item.data["choices"])

    def true_mask(self, item: Item) -> list[bool]:
        gold = int(item.data["gold"])
        return [i == gold for i in range(len(self.choices(item)))]

    def context(self, item: Item, prefix: Any) -> str:
        raise NotImplementedError

    def build_requests(self, item: Item, setup: Any, context: Any) -> list[Request]:
        ctx = self.context(item, context)
        return [LoglikelihoodRequest(ctx, " " + choice) for choice in self.choices(item)]

    def gold_text(self, item: Item) -> str:
        return " | ".join(c for c, t in zip(self.choices(item), self.true_mask(item)) if t)

    def _logprobs(self, requests: list[Request], responses: list[Response]) -> tuple[list[float], list[float]]:
        if len(responses) != len(requests):
            raise ValueError("one log-likelihood per choice expected")
        raw = [r.logprob for r in responses]  # type: ignore[union-attr]
        require_valid_logprobs(raw)
        # lm-eval's acc_norm divides by the choice text's length, without the leading space.
        normed = [lp / max(1, len(req.continuation.removeprefix(" "))) for lp, req in zip(raw, requests)]  # type: ignore[union-attr]
        return raw, normed

    def gold_responses(self, item: Item, requests: list[Request]) -> list[Response]:
        return [
            Loglikelihood(logprob=0.0 if is_true else IMPOSSIBLE_LOGPROB, n_chars=len(req.continuation))  # type: ignore[union-attr]
            for is_true, req in zip(self.true_mask(item), requests)
        ]


def fraction_correct(scores: list[ItemScore | None], key: str) -> float:
    n = len(scores)
    return 100.0 * sum(1 for s in scores if s and s.details.get(key)) / n if n else 0.0
