"""Endpoint substitution check: is the API a submission names serving the submitted weights?

`check_endpoint` (verification.endpoint.check) is the pipeline's entry point; it is loaded
lazily because the HTTP backend imports this package's URL validation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_endpoint"]


def __getattr__(name: str) -> Any:
    if name == "check_endpoint":
        from verification.endpoint.check import check_endpoint

        return check_endpoint
    raise AttributeError(name)
