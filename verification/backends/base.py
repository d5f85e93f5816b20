"""The one interface every inference backend implements: generate and log-likelihood.

A benchmark hands *all* its requests to the backend in one call so that engines with continuous
batching (vLLM) can schedule them together; a backend must return one answer per request, in
order, and must never raise for a single bad request: it puts the failure in that answer's
`error` field so the sample is counted in n_errors and the run goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from verification.records import (
    ChoiceRequest,
    ChoiceScores,
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
)

# Called with the number of requests finished so far in the current batch.
ProgressCallback = Callable[[int], None]


def describe_error(error: BaseException) -> str:
    """One line naming the exception, for a request's `error` field."""
    return f"{type(error).__name__}: {error}"


class BackendError(RuntimeError):
    """The backend as a whole cannot serve (engine failed to start, endpoint unreachable)."""


class Backend(ABC):
    name: str = "abstract"

    @abstractmethod
    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[Generation]:
        ...

    @abstractmethod
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[Loglikelihood]:
        ...

    def choice_logprobs(
        self, requests: Sequence[ChoiceRequest], progress: ProgressCallback | None = None
    ) -> list[ChoiceScores]:
        """Default: one log-likelihood per (context, choice). Backends that can read all
        single-token choices from one forward pass override this."""
        flat = [LoglikelihoodRequest(r.context, c) for r in requests for c in r.choices]
        scored = self.loglikelihood(flat, progress=None)
        out: list[ChoiceScores] = []
        pos = 0
        for i, r in enumerate(requests):
            chunk = scored[pos : pos + len(r.choices)]
            pos += len(r.choices)
            errors = [s.error for s in chunk if s.error]
            out.append(ChoiceScores([s.logprob for s in chunk], errors[0] if errors else None))
            if progress:
                progress(i + 1)
        return out

    def describe(self) -> dict[str, Any]:
        """Backend name, package versions, model path/sha, dtype: goes into the run record."""
        return {"backend": self.name}

    def close(self) -> None:
        """Release the engine (GPU memory, worker processes)."""
