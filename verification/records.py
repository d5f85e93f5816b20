"""Plain data records shared by the whole engine: requests to a backend, what it answers, and
what a benchmark keeps per sample.

These are the contract between benchmarks, backends, the runner and the pipeline; nothing here
imports Django (verification/ must stay usable from a CLI alone).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """Explicit decoding settings. Never the model's generation_config defaults: what we pass
    is what we record."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    params: SamplingParams
    # When True the backend wraps `prompt` as one user turn with the tokenizer's chat template
    # (the benchmark's "chat template on" setup). Backends without a template fall back to the
    # plain prompt and say so in `Generation.note`.
    chat: bool = False


@dataclass
class Generation:
    """One completion. `error` set means the harness failed (counts in n_errors), never that the
    model answered wrongly."""

    text: str = ""
    error: str | None = None
    finish_reason: str | None = None
    n_tokens: int = 0
    # Token ids / logprobs are filled when the backend can provide them cheaply (vLLM, HTTP with
    # logprobs); the endpoint check uses them.
    token_ids: list[int] | None = None
    token_logprobs: list[float] | None = None
    note: str | None = None


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | context), summed over the continuation's tokens."""

    context: str
    continuation: str


@dataclass
class Loglikelihood:
    logprob: float = float("-inf")
    is_greedy: bool = False
    n_tokens: int = 0
    n_chars: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ChoiceRequest:
    """Score several single-token continuations (e.g. " A".." D") after one context in a single
    forward pass. Backends fall back to per-choice log-likelihood when a choice is not a single
    token."""

    context: str
    choices: tuple[str, ...]


@dataclass
class ChoiceScores:
    logprobs: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class SampleRecord:
    """Everything a benchmark keeps about one item. `error` (harness failure) and `unparsed`
    (model answered, nothing extractable) are both scored 0 and counted apart."""

    index: int
    item_id: str
    prompt: str
    output: str
    extracted: str | None
    gold: str
    correct: bool
    score: float  # 0..1; equals float(correct) for 0/1 metrics, partial credit otherwise
    error: str | None = None
    unparsed: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
