"""GSM8K-style final-number extraction and exact rational comparison (methods.md §2).

Strict: the number after `#### ` (lm-eval `gsm8k` strict-match; the primary metric), or after
`The answer is` in the chain-of-thought format (lm-eval `gsm8k_cot` strict-match). Flexible: the
last number in the output (lm-eval flexible-extract regex). Numbers are compared as exact
rationals after removing `,`, `$`, `%` and a trailing period, so "1,000.00" equals "1000".
"""

from __future__ import annotations

import re
from fractions import Fraction

STRICT_HASH = re.compile(r"#### (\-?[0-9\.\,]+)")
STRICT_COT = re.compile(r"The answer is (\-?[0-9\.\,]+)")
# lm-eval's flexible-extract pattern, last match wins.
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def to_rational(text: str | None) -> Fraction | None:
    """Exact rational value of a GSM8K-style number, or None when it is not a number."""
    if text is None:
        return None
    cleaned = text.strip().replace(",", "").replace("$", "").replace("%", "").rstrip(".")
    if not cleaned or cleaned in {"-", "."}:
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_strict(output: str, cot: bool = False) -> str | None:
    """First `#### N` (or `The answer is N` with chain-of-thought prompts)."""
    for pattern in ((STRICT_COT, STRICT_HASH) if cot else (STRICT_HASH,)):
        match = pattern.search(output)
        if match and to_rational(match.group(1)) is not None:
            return match.group(1)
    return None


def extract_flexible(output: str) -> str | None:
    """The last number-looking token that parses as a number."""
    for match in reversed(list(FLEXIBLE.finditer(output))):
        candidate = match.group(1) or match.group(2)
        if to_rational(candidate) is not None:
            return candidate
    return None


def gold_number(answer: str) -> str:
    """The gold number of a GSM8K solution (`... #### N`)."""
    if "####" not in answer:
        raise ValueError("GSM8K answer has no '#### N' line")
    gold = answer.split("####")[-1].strip()
    if to_rational(gold) is None:
        raise ValueError(f"GSM8K gold {gold!r} is not a number")
    return gold


def numbers_equal(predicted: str | None, gold: str) -> bool:
    value = to_rational(predicted)
    return value is not None and value == to_rational(gold)
