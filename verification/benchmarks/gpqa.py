"""GPQA (Rein et al. 2023), supported when a maintainer supplies its data.

The authors distribute GPQA password-protected so its questions do not leak into training data,
so it is never shipped with Verity: a maintainer who has it puts the CSV at
DATASETS_DIR/gpqa/gpqa_diamond.csv (or passes a path to GPQASpec). Expected columns (the official CSVs): `Question`, `Correct Answer`,
`Incorrect Answer 1..3`, optional `Record ID`. Choices are shuffled per item with a fixed seed
(the official files list the correct answer first), the prompt follows lm-eval `gpqa_*_zeroshot`
("What is the correct answer to this question: …\nChoices:\n(A) …\nAnswer:") and the letter
" (A)".." (D)" is chosen by log-likelihood.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from verification.benchmarks.base import DatasetUnavailable, Item, Request, Setup
from verification.benchmarks.multiple_choice import LETTERS, LetterChoiceSpec
from verification.datasets import file_sha256, read_csv_dicts
from verification.records import ChoiceRequest

# Where a maintainer puts the CSV they obtained, inside the benchmark data directory.
CSV_NAME = "gpqa/gpqa_diamond.csv"
SHUFFLE_SEED = 0


class GPQASpec(LetterChoiceSpec):
    version = "1"
    primary_metric = "acc"
    default_setup = Setup(shots=0, cot=False, chat_template=False)

    def __init__(self, slug: str = "gpqa", csv_path: str | Path | None = None, title: str = "GPQA") -> None:
        self.slug = slug
        self.title = title
        self._csv_path = Path(csv_path) if csv_path else None

    def csv_path(self, datasets_dir: Path) -> Path:
        path = self._csv_path or Path(datasets_dir) / CSV_NAME
        if not path.is_file():
            raise DatasetUnavailable(
                f"GPQA data is not bundled (it is distributed password-protected); put the CSV at {path}"
            )
        return path

    def unsupported_reason(self, setup: Setup) -> str | None:
        if setup.shots or setup.cot or setup.chat_template:
            return "GPQA is run 0-shot by answer-letter log-likelihood only"
        return None

    def read_items(self, datasets_dir: Path) -> tuple[list[Item], dict[str, Any]]:
        path = self.csv_path(datasets_dir)
        items = []
        for index, row in enumerate(read_csv_dicts(path)):
            try:
                answers = [row["Correct Answer"]] + [row[f"Incorrect Answer {i}"] for i in (1, 2, 3)]
                question = row["Question"]
            except KeyError as exc:
                raise DatasetUnavailable(f"{path}: GPQA CSV lacks column {exc}") from exc
            order = list(range(4))
            random.Random(f"{SHUFFLE_SEED}-{index}").shuffle(order)
            choices = [answers[i].strip() for i in order]
            item_id = row.get("Record ID") or str(index)
            items.append(Item(index, item_id, {"question": question.strip(), "choices": choices, "gold": order.index(0)}))
        return items, {"kind": "maintainer_csv", "path": str(path), "file_sha256": file_sha256(path)}

    def build_requests(self, item: Item, setup: Setup, context: Any) -> list[Request]:
        lines = "".join(f"({LETTERS[i]}) {c}\n" for i, c in enumerate(item.data["choices"]))
        prompt = f"What is the correct answer to this question: {item.data['question']}\nChoices:\n{lines}Answer:"
        return [ChoiceRequest(prompt, tuple(f" ({LETTERS[i]})" for i in range(4)))]
