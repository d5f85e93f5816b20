"""Text that reaches the public (run errors, refusal reasons, sample errors and details, form
messages) with the machine's internals taken out: absolute file-system paths say where Verity's
caches, checkouts and workers live and help nobody reading a model page; what a generated program
printed stays with the maintainers."""

from __future__ import annotations

import re
from typing import Any

from verification.sandbox import PRIVATE_OUTPUT_KEY

# An absolute POSIX path of two or more parts ("/var/lib/verity/x", "/tmp/pytest-1/hf-cache"),
# not the path of a URL ("https://host/v1": preceded by the host) nor a fraction ("1/2").
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+-]+/)+[\w.@+-]*")
HIDDEN = "[path]"


def scrub_internal(text: str | None) -> str:
    """`text` without absolute paths (each becomes "[path]")."""
    if not text:
        return ""
    return _ABSOLUTE_PATH.sub(HIDDEN, text)


# What a generated program printed when it was run (the sandbox's excerpt) is kept for
# maintainers only: it can echo the machine's environment back.
PRIVATE_DETAIL_KEYS = frozenset({PRIVATE_OUTPUT_KEY, "stdout", "stderr"})


def public_details(details: Any) -> Any:
    """A sample's `details` without the private keys, at any depth."""
    if isinstance(details, dict):
        return {k: public_details(v) for k, v in details.items() if k not in PRIVATE_DETAIL_KEYS}
    if isinstance(details, list):
        return [public_details(v) for v in details]
    return details
