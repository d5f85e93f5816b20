"""A deliberate extractor change for the re-scoring tests: GSM8K whose strict extractor also
accepts "The answer is N." after the plain prompt, with its version bumped as the benchmark
rules require. Outputs ending that way were unparsed under version 1 and become scoreable."""

from __future__ import annotations

import re
from typing import Any

from verification import runner
from verification.benchmarks.base import Item, ItemScore, Setup
from verification.benchmarks.gsm8k import GSM8KSpec
from verification.records import Generation, SampleRecord
from verification.scoring import numbers

LENIENT_VERSION = "2-lenient"
_ANSWER_IS = re.compile(r"The answer is\s*\$?(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
# 0-shot: the prompt needs no exemplars, so the tests read only the test file.
SETUP = Setup(shots=0, cot=False, chat_template=False)


class LenientGSM8K(GSM8KSpec):
    def __init__(self) -> None:
        super().__init__(version=LENIENT_VERSION)

    def score(self, item: Item, requests: list[Any], responses: list[Any]) -> ItemScore:
        result = super().score(item, requests, responses)
        if result.extracted is not None:
            return result
        match = _ANSWER_IS.search(result.output)
        if match is None:
            return result
        correct = numbers.numbers_equal(match.group(1), self.gold_text(item))
        return ItemScore(correct, float(correct), match.group(1), result.output, unparsed=False,
                         details=result.details)


def stored_records(outputs: list[str], datasets_dir: str, spec: GSM8KSpec | None = None) -> list[SampleRecord]:
    """What a run of GSM8K v1 stores for the first len(outputs) items answering `outputs`: the
    runner's own per-item scoring of those texts."""
    spec = spec or GSM8KSpec()
    loaded = spec.load(datasets_dir, limit=len(outputs))
    context = spec.prepare(datasets_dir, SETUP)
    requests = [spec.build_requests(item, SETUP, context) for item in loaded.items]
    records, _ = runner._score_chunk(spec, loaded.items, requests, [[Generation(text=o)] for o in outputs], None)
    return records


def gold_numbers(datasets_dir: str, n: int) -> list[str]:
    spec = GSM8KSpec()
    return [spec.gold_text(item) for item in spec.load(datasets_dir, limit=n).items]


def outputs_for(golds: list[str], plan: str) -> list[str]:
    """One output per item from a plan string: 'H' right with '#### N', 'A' right as 'The answer
    is N.' (unparsed under v1, right under the lenient extractor), 'W' wrong with '#### N',
    'w' wrong as 'The answer is N.', 'x' no number at all."""
    out = []
    for gold, kind in zip(golds, plan):
        wrong = str(int(float(gold.replace(",", ""))) + 1)
        out.append({
            "H": f"Some reasoning.\n#### {gold}",
            "A": f"Some reasoning. The answer is {gold}.",
            "W": f"Some reasoning.\n#### {wrong}",
            "w": f"Some reasoning. The answer is {wrong}.",
            "x": "I do not know.",
        }[kind])
    return out
