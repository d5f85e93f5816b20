"""IFEval (Zhou et al. 2023) through lm-eval's maintained implementation of the verifiable
instructions: prompt-level and instruction-level accuracy, strict and loose.

Primary metric: prompt-level strict accuracy (0/1 per prompt); instruction-level strict/loose and
prompt-level loose are secondary. Default setup: 0-shot with the chat template (the instruction
is a user turn); without a template the backend falls back to the plain prompt and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verification.benchmarks.base import BenchmarkSpec, Item, ItemScore, Request, Response, Setup
from verification.datasets import read_records
from verification.records import Generation, GenerationRequest, SamplingParams
from verification.scoring import ifeval as ifeval_scoring
from verification.scoring.ifeval_gold import construct_gold


class IFEvalSpec(BenchmarkSpec):
    slug = "ifeval"
    version = "1"
    title = "IFEval"
    request_kind = "generate"
    primary_metric = "prompt_level_strict_acc"
    default_setup = Setup(shots=0, cot=False, chat_template=True)

    def unsupported_reason(self, setup: Setup) -> str | None:
        if setup.shots or setup.cot:
            return "IFEval is 0-shot without chain-of-thought exemplars"
        return None

    def read_items(self, datasets_dir: Path) -> tuple[list[Item], dict[str, Any]]:
        path, source = self.data_file(datasets_dir, "ifeval/input_data.jsonl")
        items = [
            Item(i, str(row["key"]), {"prompt": row["prompt"], "instruction_id_list": row["instruction_id_list"],
                                      "kwargs": row["kwargs"]})
            for i, row in enumerate(read_records(path))
        ]
        return items, source

    def sampling_params(self, setup: Setup) -> SamplingParams:
        return SamplingParams(temperature=0.0, max_tokens=1280, stop=())

    def build_requests(self, item: Item, setup: Setup, context: Any) -> list[Request]:
        return [GenerationRequest(item.data["prompt"], self.sampling_params(setup), chat=setup.chat_template)]

    def gold_text(self, item: Item) -> str:
        return ", ".join(item.data["instruction_id_list"])

    def score(self, item: Item, requests: list[Request], responses: list[Response]) -> ItemScore:
        output = responses[0].text  # type: ignore[union-attr]
        result = ifeval_scoring.check(item.data["prompt"], item.data["instruction_id_list"], item.data["kwargs"], output)
        correct = result["prompt_strict"]
        return ItemScore(correct, float(correct), None, output, details=result)

    def gold_responses(self, item: Item, requests: list[Request]) -> list[Response]:
        gold = construct_gold(item.data["prompt"], item.data["instruction_id_list"], item.data["kwargs"])
        if gold is None:
            return [Generation(error="no constructed gold response for this IFEval item")]
        return [Generation(text=gold)]

    def secondary_metrics(self, scores, items) -> dict[str, Any]:
        n = len(scores)
        inst_strict: list[bool] = []
        inst_loose: list[bool] = []
        prompt_loose = 0
        for score, item in zip(scores, items):
            n_inst = len(item.data["instruction_id_list"])
            if score is None or "strict" not in score.details:
                inst_strict += [False] * n_inst
                inst_loose += [False] * n_inst
                continue
            inst_strict += score.details["strict"]
            inst_loose += score.details["loose"]
            prompt_loose += int(score.details["prompt_loose"])
        return {
            "prompt_level_loose_acc": 100.0 * prompt_loose / n if n else 0.0,
            "inst_level_strict_acc": 100.0 * sum(inst_strict) / len(inst_strict) if inst_strict else 0.0,
            "inst_level_loose_acc": 100.0 * sum(inst_loose) / len(inst_loose) if inst_loose else 0.0,
        }
