"""Reference backends for the harness's own integrity checks (methods.md §2 guards):

- NullBackend: a model with no information (seeded random or constant answers). On
  multiple-choice sets it must score at chance.
- OracleBackend: answers with the gold (fed back through the real prompts and scorers). Every
  benchmark must then score 100%.
- FaultyBackend: wraps another backend and injects harness failures (raised exceptions,
  per-request errors, hangs) or model failures (empty / garbage output), so the tests can show
  each is counted where it belongs.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verification.backends.base import Backend, BackendError, ProgressCallback
from verification.benchmarks.base import BenchmarkSpec, Setup, Subsample
from verification.datasets import datasets_dir_or_default
from verification.records import (
    ChoiceRequest,
    ChoiceScores,
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
)


def _stable_rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join((str(seed),) + parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class NullBackend(Backend):
    """No information about the answers. `mode="random"`: each request gets seeded random
    scores (a per-character log-likelihood, so length normalisation stays fair) or a random
    short text; `mode="constant"`: equal scores for every choice (a tie: never credited) and
    `constant_text` for every generation."""

    name = "null"

    def __init__(self, seed: int = 0, mode: str = "random", constant_text: str = "") -> None:
        if mode not in ("random", "constant"):
            raise ValueError("mode must be 'random' or 'constant'")
        self.seed = seed
        self.mode = mode
        self.constant_text = constant_text

    def generate(self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None) -> list[Generation]:
        out = []
        for i, request in enumerate(requests):
            if self.mode == "constant":
                text = self.constant_text
            else:
                rng = _stable_rng(self.seed, "gen", request.prompt)
                text = f" I think the answer is {rng.randint(0, 1000)}."
            out.append(Generation(text=text, finish_reason="stop"))
            if progress:
                progress(i + 1)
        return out

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None) -> list[Loglikelihood]:
        out = []
        for i, request in enumerate(requests):
            chars = max(1, len(request.continuation.removeprefix(" ")))
            if self.mode == "constant":
                logprob = -1.0 * chars
            else:
                per_char = _stable_rng(self.seed, "ll", request.context, request.continuation).uniform(0.5, 3.0)
                logprob = -per_char * chars
            out.append(Loglikelihood(logprob=logprob, n_chars=chars))
            if progress:
                progress(i + 1)
        return out

    def choice_logprobs(self, requests: Sequence[ChoiceRequest], progress: ProgressCallback | None = None) -> list[ChoiceScores]:
        out = []
        for i, request in enumerate(requests):
            if self.mode == "constant":
                scores = [-1.0] * len(request.choices)
            else:
                rng = _stable_rng(self.seed, "choice", request.context)
                scores = [-rng.uniform(0.1, 10.0) for _ in request.choices]
            out.append(ChoiceScores(scores))
            if progress:
                progress(i + 1)
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "seed": self.seed, "mode": self.mode}


class OracleBackend(Backend):
    """Answers every request of `spec` with the gold response the spec defines, built from the
    very prompts the runner will send (same setup, same items). A request it has no gold for
    gets an error, so a mismatch between oracle and runner shows up as n_errors, not as 100%."""

    name = "oracle"

    def __init__(
        self,
        spec: BenchmarkSpec,
        *,
        datasets_dir: str | Path | None = None,
        setup: Setup | None = None,
        limit: int | None = None,
        subsample: Subsample | int | tuple[int, int] | None = None,
    ) -> None:
        self.spec = spec
        self.setup = setup or spec.default_setup
        data_dir = datasets_dir_or_default(datasets_dir)
        loaded = spec.load(data_dir, limit=limit, subsample=subsample)
        context = spec.prepare(data_dir, self.setup)
        self._answers: dict[Any, Any] = {}
        self.n_without_gold = 0
        for item in loaded.items:
            requests = spec.build_requests(item, self.setup, context)
            gold = spec.gold_responses(item, requests)
            for request, response in zip(requests, gold):
                self._answers.setdefault(request, response)
                if getattr(response, "error", None):
                    self.n_without_gold += 1

    def _lookup(self, request: Any, missing: Any) -> Any:
        return self._answers.get(request, missing)

    def generate(self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None) -> list[Generation]:
        return [self._lookup(r, Generation(error="oracle: no gold for this request")) for r in requests]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None) -> list[Loglikelihood]:
        return [self._lookup(r, Loglikelihood(error="oracle: no gold for this request")) for r in requests]

    def choice_logprobs(self, requests: Sequence[ChoiceRequest], progress: ProgressCallback | None = None) -> list[ChoiceScores]:
        return [self._lookup(r, ChoiceScores(error="oracle: no gold for this request")) for r in requests]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "benchmark": self.spec.slug, "setup": self.setup.as_dict()}


FAULTS = ("raise", "error", "hang", "empty", "garbage")


class FaultyBackend(Backend):
    """Wraps `inner` and injects one kind of fault into every `every`-th request (counted across
    calls, starting with the first):

    - "raise": the backend call itself raises BackendError (harness failure for the whole chunk);
    - "error": the selected requests come back with `error` set (harness failure, per item);
    - "hang": the call sleeps `hang_s` before answering (the runner's watchdog times it out);
    - "empty": the selected generations are empty strings (model failure: unparsed);
    - "garbage": the selected generations are text with no answer in it (unparsed).
    """

    name = "faulty"

    def __init__(self, inner: Backend, fault: str, every: int = 1, hang_s: float = 5.0) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        if every < 1:
            raise ValueError("every must be >= 1")
        self.inner = inner
        self.fault = fault
        self.every = every
        self.hang_s = hang_s
        self._seen = 0

    def _selected(self, count: int) -> list[bool]:
        flags = [(self._seen + i) % self.every == 0 for i in range(count)]
        self._seen += count
        return flags

    def _before_call(self) -> None:
        if self.fault == "raise":
            raise BackendError("injected backend failure")
        if self.fault == "hang":
            time.sleep(self.hang_s)

    def generate(self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None) -> list[Generation]:
        self._before_call()
        answers = self.inner.generate(requests)
        out = []
        for answer, selected in zip(answers, self._selected(len(requests))):
            if selected and self.fault == "error":
                answer = Generation(error="injected request error")
            elif selected and self.fault == "empty":
                answer = Generation(text="", finish_reason="stop")
            elif selected and self.fault == "garbage":
                answer = Generation(text=" no idea, sorry", finish_reason="stop")
            out.append(answer)
        return out

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None) -> list[Loglikelihood]:
        self._before_call()
        answers = self.inner.loglikelihood(requests)
        return [Loglikelihood(error="injected request error") if sel and self.fault == "error" else a
                for a, sel in zip(answers, self._selected(len(requests)))]

    def choice_logprobs(self, requests: Sequence[ChoiceRequest], progress: ProgressCallback | None = None) -> list[ChoiceScores]:
        self._before_call()
        answers = self.inner.choice_logprobs(requests)
        return [ChoiceScores(error="injected request error") if sel and self.fault == "error" else a
                for a, sel in zip(answers, self._selected(len(requests)))]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "fault": self.fault, "every": self.every, "inner": self.inner.describe()}
