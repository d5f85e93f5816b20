"""ARC-Challenge (Clark et al. 2018), lm-eval `arc_challenge` conventions: "Question: …\nAnswer:"
and the log-likelihood of " <choice text>" per choice; primary metric acc_norm (log-likelihood
divided by the continuation's character length), acc reported too.

Setup: the Open LLM Leaderboard v1 used 25 shots from the ARC train split, which is not available
offline here; few-shot runs are supported only when `arc_challenge/train.jsonl` (same schema as
test) exists under DATASETS_DIR. Otherwise only 0-shot (lm-eval's default) runs, and
`unsupported_reason` says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verification.benchmarks.base import DatasetUnavailable, Item, ItemScore, Request, Response, Setup
from verification.benchmarks.multiple_choice import ContinuationChoiceSpec, argmax, fraction_correct
from verification.datasets import read_jsonl, read_records

TRAIN_FILE = "arc_challenge/train.jsonl"


def _row_to_data(row: dict[str, Any]) -> dict[str, Any]:
    labels = [opt["label"] for opt in row["options"]]
    if row["answer"] not in labels:
        raise DatasetUnavailable(f"ARC item {row.get('id')}: answer {row['answer']!r} not among {labels}")
    return {
        "question": row["question"],
        "choices": [opt["text"] for opt in row["options"]],
        "labels": labels,
        "gold": labels.index(row["answer"]),
    }


class ARCChallengeSpec(ContinuationChoiceSpec):
    slug = "arc_challenge"
    version = "1"
    title = "ARC-Challenge"
    primary_metric = "acc_norm"
    default_setup = Setup(shots=0, cot=False, chat_template=False)

    def __init__(self, datasets_dir_hint: Path | None = None) -> None:
        self._datasets_dir_hint = datasets_dir_hint

    def unsupported_reason(self, setup: Setup) -> str | None:
        if setup.cot or setup.chat_template:
            return "ARC is scored by choice log-likelihood; chain-of-thought and chat template are not supported"
        if setup.shots > 0:
            from verification.datasets import datasets_dir_or_default

            train = datasets_dir_or_default(self._datasets_dir_hint) / TRAIN_FILE
            if not train.is_file():
                return (
                    f"{setup.shots}-shot ARC needs the ARC train split ({TRAIN_FILE}), which is not "
                    "available; only 0-shot is supported here"
                )
        return None

    def read_items(self, datasets_dir: Path) -> tuple[list[Item], dict[str, Any]]:
        path, source = self.data_file(datasets_dir, "arc_challenge/test.jsonl")
        items = [Item(i, str(row["id"]), _row_to_data(row)) for i, row in enumerate(read_records(path))]
        return items, source

    def prepare(self, datasets_dir: Path, setup: Setup) -> str:
        if setup.shots == 0:
            return ""
        path, _ = self.data_file(datasets_dir, TRAIN_FILE)
        rows = [_row_to_data(r) for r in read_jsonl(path)[: setup.shots]]
        return "".join(f"Question: {r['question']}\nAnswer: {r['choices'][r['gold']]}\n\n" for r in rows)

    def context(self, item: Item, prefix: Any) -> str:
        return f"{prefix or ''}Question: {item.data['question']}\nAnswer:"

    def score(self, item: Item, requests: list[Request], responses: list[Response]) -> ItemScore:
        raw, normed = self._logprobs(requests, responses)
        pick_norm, pick_raw = argmax(normed), argmax(raw)
        if pick_norm is None:
            return ItemScore(False, 0.0, None, "", unparsed=True, details={"logprobs": raw})
        gold = int(item.data["gold"])
        correct = pick_norm == gold
        label = item.data["labels"][pick_norm]
        return ItemScore(correct, float(correct), label, item.data["choices"][pick_norm],
                         details={"logprobs": raw, "acc_correct": pick_raw == gold})

    def gold_text(self, item: Item) -> str:
        return item.data["labels"][int(item.data["gold"])]

    def secondary_metrics(self, scores, items) -> dict[str, Any]:
        return {"acc": fraction_correct(scores, "acc_correct")}
