"""MATH / MATH-500 answers, checked with the pinned math-verify (methods.md §2):
verify(parse(gold), parse(pred)), gold first.

Any exception while parsing or verifying the *prediction* makes it wrong (recorded in details),
never correct. A gold that math-verify cannot parse is a harness problem and raises (n_errors).
"""

from __future__ import annotations

import threading
from typing import Any


def last_boxed(text: str) -> str | None:
    """Contents of the last \\boxed{...} (or \\fbox{...}) in `text`, braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for pos in range(brace, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : pos]
    return None


def _timeouts() -> dict[str, Any]:
    # math-verify's timeouts use SIGALRM, which only works in the main thread.
    if threading.current_thread() is threading.main_thread():
        return {}
    return {"parsing_timeout": None}


def parse_gold(answer: str) -> list[Any]:
    from math_verify import parse

    parsed = parse(f"$\\boxed{{{answer}}}$", **_timeouts())
    if not parsed:
        raise ValueError(f"math-verify cannot parse the gold answer {answer!r}")
    return parsed


def check(gold_answer: str, output: str) -> tuple[bool, str | None, bool, dict[str, Any]]:
    """(correct, extracted, unparsed, details) for one model output."""
    from math_verify import parse, verify

    gold = parse_gold(gold_answer)
    try:
        predicted = parse(output, **_timeouts())
    except Exception as exc:  # hostile or odd output: wrong, not a crash
        return False, None, True, {"parse_exception": repr(exc)[:300]}
    if not predicted:
        return False, None, True, {}
    extracted = str(predicted[-1]) if len(predicted) > 1 else str(predicted[0])
    try:
        verify_kwargs: dict[str, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            verify_kwargs["timeout_seconds"] = None
        correct = bool(verify(gold, predicted, **verify_kwargs))
    except Exception as exc:
        return False, extracted, False, {"verify_exception": repr(exc)[:300]}
    return correct, extracted, False, {}
