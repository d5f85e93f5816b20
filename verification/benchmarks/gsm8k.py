"""GSM8K (Cobbe et al. 2021), lm-eval `gsm8k` conventions (methods.md §6).

Default setup: 5-shot, no explicit chain-of-thought format; exemplars are the first N training
items in file order (lm-eval samples them at random with a fixed seed; ours are deterministic by
construction), rendered "Question: …\nAnswer: <full solution with #### N>". With cot=True the
exemplars use the chain-of-thought format of lm-eval `gsm8k_cot` ("Q: … A: <reasoning> The answer
is N."), with up to 8 shots. Primary metric: strict match (`#### N`, or `The answer is N` with
CoT); flexible (last number) is reported as a secondary metric. Numbers compare as exact rationals.

`gsm8k_style_spec` builds the same benchmark over another item source (private held-out sets,
freshly generated variants).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verification.benchmarks.base import (
    BenchmarkSpec,
    DatasetUnavailable,
    Item,
    ItemScore,
    Request,
    Response,
    Setup,
)
from verification.datasets import read_records
from verification.records import Generation, GenerationRequest, SamplingParams
from verification.scoring import numbers

MAX_SHOTS = 8
PLAIN_STOP = ("Question:", "</s>", "<|im_end|>")
# The chain-of-thought format's stop list also tells the scorer which strict pattern applies.
COT_STOP = ("Q:", "</s>", "<|im_end|>", "\n\n")
_CALCULATOR = re.compile(r"<<[^>]*>>")

# An item source returns (records with `question` and `answer` ending in `#### N`, source info).
ItemsLoader = Callable[[Path], tuple[list[dict[str, Any]], dict[str, Any]]]


def cot_solution(answer: str) -> str:
    """A training solution as chain-of-thought text: calculator notes removed, one line,
    ending "The answer is N."."""
    reasoning = answer.split("####")[0]
    reasoning = _CALCULATOR.sub("", reasoning)
    reasoning = " ".join(line.strip() for line in reasoning.splitlines() if line.strip())
    return f"{reasoning} The answer is {numbers.gold_number(answer)}."


class GSM8KSpec(BenchmarkSpec):
    request_kind = "generate"
    primary_metric = "exact_match_strict"
    default_setup = Setup(shots=5, cot=False, chat_template=False)

    def __init__(
        self,
        slug: str = "gsm8k",
        version: str = "1",
        items_loader: ItemsLoader | None = None,
        title: str = "GSM8K",
        max_tokens: int = 256,
    ) -> None:
        self.slug = slug
        self.version = version
        self.title = title
        self._items_loader = items_loader or self._gsm8k_test
        self._max_tokens = max_tokens

    def _gsm8k_test(self, datasets_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        path, source = self.data_file(datasets_dir, "gsm8k/test.jsonl")
        return read_records(path), source

    def unsupported_reason(self, setup: Setup) -> str | None:
        if not 0 <= setup.shots <= MAX_SHOTS:
            return f"{self.slug} supports 0..{MAX_SHOTS} shots, not {setup.shots}"
        return None

    def read_items(self, datasets_dir: Path) -> tuple[list[Item], dict[str, Any]]:
        records, source = self._items_loader(datasets_dir)
        items = []
        for index, record in enumerate(records):
            if "question" not in record or "answer" not in record:
                raise DatasetUnavailable(f"{self.slug} item {index} lacks question/answer")
            numbers.gold_number(record["answer"])  # fail loudly on a malformed gold
            item_id = str(record.get("id", index))
            items.append(Item(index, item_id, {"question": record["question"], "answer": record["answer"]}))
        return items, source

    def prepare(self, datasets_dir: Path, setup: Setup) -> str:
        """The few-shot prefix (exemplars from GSM8K train)."""
        if setup.shots == 0:
            return ""
        path, _ = self.data_file(datasets_dir, "gsm8k/train.jsonl")
        exemplars = read_records(path)[: setup.shots]
        if setup.cot:
            return "".join(f"Q: {e['question']}\nA: {cot_solution(e['answer'])}\n\n" for e in exemplars)
        return "".join(f"Question: {e['question']}\nAnswer: {e['answer']}\n\n" for e in exemplars)

    def sampling_params(self, setup: Setup) -> SamplingParams:
        stop = COT_STOP if setup.cot else PLAIN_STOP
        return SamplingParams(temperature=0.0, max_tokens=self._max_tokens, stop=stop)

    def build_requests(self, item: Item, setup: Setup, context: Any) -> list[Request]:
        question = item.data["question"]
        body = f"Q: {question}\nA:" if setup.cot else f"Question: {question}\nAnswer:"
        return [GenerationRequest(prompt=(context or "") + body, params=self.sampling_params(setup), chat=setup.chat_template)]

    def gold_text(self, item: Item) -> str:
        return numbers.gold_number(item.data["answer"])

    def score(self, item: Item, requests: list[Request], responses: list[Response]) -> ItemScore:
        output = responses[0].text  # type: ignore[union-attr]
        gold = self.gold_text(item)
        cot = tuple(requests[0].params.stop) == COT_STOP  # type: ignore[union-attr]
        strict = numbers.extract_strict(output, cot=cot)
        flexible = numbers.extract_flexible(output)
        correct = numbers.numbers_equal(strict, gold)
        return ItemScore(
            correct=correct,
            score=float(correct),
            extracted=strict,
            output=output,
            unparsed=strict is None,
            details={
                "flexible_extracted": flexible,
                "flexible_correct": numbers.numbers_equal(flexible, gold),
            },
        )

    def gold_responses(self, item: Item, requests: list[Request]) -> list[Response]:
        gold = self.gold_text(item)
        return [Generation(text=f" Reasoning as in the reference solution. The answer is {gold}.\n#### {gold}")]

    def secondary_metrics(self, scores: list[ItemScore | None], items: list[Item]) -> dict[str, Any]:
        n = len(scores)
        flexible_correct = sum(1 for s in scores if s and s.details.get("flexible_correct"))
        flexible_unparsed = sum(1 for s in scores if s and s.details.get("flexible_extracted") is None)
        return {
            "exact_match_flexible": 100.0 * flexible_correct / n if n else 0.0,
            "flexible_n_unparsed": flexible_unparsed,
        }


def gsm8k_style_spec(slug: str, version: str, items_loader: ItemsLoader, *, title: str | None = None) -> GSM8KSpec:
    """The GSM8K benchmark (same prompts, extraction, scoring) over another item source.

    `items_loader(datasets_dir)` returns (records, source): records are dicts with `question`,
    `answer` (a solution ending in `#### N`, or just `#### N`) and optionally `id`; source is a
    JSON-safe description recorded with the run (e.g. {"kind": "generated", "seed": 7}). Few-shot
    exemplars still come from GSM8K train in datasets_dir. Register the result with
    `registry.register(spec)`; bump `version` whenever the item source changes."""
    return GSM8KSpec(slug=slug, version=version, items_loader=items_loader, title=title or slug)
