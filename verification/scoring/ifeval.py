"""IFEval scoring through lm-eval's maintained implementation of the verifiable instructions
(lm_eval.tasks.ifeval: instructions registry + strict/loose checks), never a re-implementation.

NLTK's punkt_tab must be installed (`python -m verification.setup_data`); langdetect is seeded
so language checks are deterministic. The upstream checkers also draw from the global `random`
module when an argument is out of their range (e.g. IFEval key 1122 asks for the "letter" `#`,
which `LetterFrequencyChecker` replaces by a random ASCII letter), so each check runs under a
fixed seed, with the caller's random state saved and restored: the same response always gets
the same score.
"""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path
from typing import Any


def _ensure_ready() -> None:
    import langdetect
    import nltk

    langdetect.DetectorFactory.seed = 0
    target = str(Path(sys.prefix) / "nltk_data")
    if target not in nltk.data.path:
        nltk.data.path.append(target)
    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError as exc:
        raise RuntimeError(
            "NLTK punkt_tab is missing: run `python -m verification.setup_data` first"
        ) from exc


CHECK_SEED = 0
_random_lock = threading.Lock()


def check(prompt: str, instruction_ids: list[str], kwargs: list[dict[str, Any]], response: str) -> dict[str, Any]:
    """Strict and loose per-instruction results for one response (lm-eval's functions)."""
    _ensure_ready()
    from lm_eval.tasks.ifeval.utils import (
        InputExample,
        test_instruction_following_loose,
        test_instruction_following_strict,
    )

    example = InputExample(key=0, instruction_id_list=list(instruction_ids), prompt=prompt, kwargs=list(kwargs))
    with _random_lock:
        saved = random.getstate()
        try:
            random.seed(CHECK_SEED)
            strict = test_instruction_following_strict(example, response)
            random.seed(CHECK_SEED)
            loose = test_instruction_following_loose(example, response)
        finally:
            random.setstate(saved)
    return {
        "strict": [bool(x) for x in strict.follow_instruction_list],
        "loose": [bool(x) for x in loose.follow_instruction_list],
        "prompt_strict": bool(strict.follow_all_instructions),
        "prompt_loose": bool(loose.follow_all_instructions),
    }
