"""MMLU (Hendrycks et al. 2021), lm-eval `mmlu` conventions (methods.md §6): 5-shot from the dev
split of the same subject, "The following are multiple choice questions (with answers) about
<subject>." header, answer letter by log-likelihood of " A".." D" in one forward pass.
Canonical order: subjects alphabetically, rows in file order. Chain-of-thought and the chat
template are not supported (a letter log-likelihood has no place for either).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verification.benchmarks.base import DatasetUnavailable, Item, Request, Setup
from verification.benchmarks.multiple_choice import LETTERS, LetterChoiceSpec
from verification.datasets import file_sha256, read_csv_dicts
from verification.records import ChoiceRequest

MAX_SHOTS = 5


def _format_question(row: dict[str, Any], with_answer: bool) -> str:
    text = row["question"].strip() + "\n"
    text += "".join(f"{LETTERS[i]}. {row['choices'][i]}\n" for i in range(4))
    text += "Answer:"
    if with_answer:
        text += f" {LETTERS[int(row['gold'])]}\n\n"
    return text


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for raw in read_csv_dicts(path):
        try:
            rows.append({
                "question": raw["question"],
                "choices": [raw[f"choice{i}"] for i in range(4)],
                "gold": int(raw["answer"]),
            })
        except (KeyError, ValueError) as exc:
            raise DatasetUnavailable(f"{path}: malformed MMLU row ({exc})") from exc
    return rows


class DevExemplars:
    """The first `shots` dev rows of each subject, read once per run on first use."""

    def __init__(self, dev_dir: Path, shots: int) -> None:
        self.dev_dir = dev_dir
        self.shots = shots
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def for_subject(self, subject: str) -> list[dict[str, Any]]:
        if self.shots == 0:
            return []
        if subject not in self._cache:
            path = self.dev_dir / f"{subject}_dev.csv"
            if not path.is_file():
                raise DatasetUnavailable(f"MMLU dev file missing: {path}")
            rows = _rows(path)
            if len(rows) < self.shots:
                raise DatasetUnavailable(f"MMLU dev split has fewer than {self.shots} exemplars for {subject}")
            self._cache[subject] = rows[: self.shots]
        return self._cache[subject]


class MMLUSpec(LetterChoiceSpec):
    slug = "mmlu"
    version = "1"
    title = "MMLU"
    primary_metric = "acc"
    default_setup = Setup(shots=5, cot=False, chat_template=False)

    def unsupported_reason(self, setup: Setup) -> str | None:
        if setup.cot:
            return "MMLU is scored by the log-likelihood of the answer letter; chain-of-thought is not supported"
        if setup.chat_template:
            return "MMLU letter log-likelihood is run without the chat template"
        if not 0 <= setup.shots <= MAX_SHOTS:
            return f"MMLU supports 0..{MAX_SHOTS} shots (the dev split has 5 per subject)"
        return None

    def read_items(self, datasets_dir: Path) -> tuple[list[Item], dict[str, Any]]:
        test_dir = Path(datasets_dir) / "mmlu" / "test"
        files = sorted(test_dir.glob("*_test.csv"))
        if not files:
            raise DatasetUnavailable(f"no MMLU test CSVs under {test_dir}")
        items: list[Item] = []
        hashes = {}
        for path in files:
            subject = path.name[: -len("_test.csv")]
            hashes[path.name] = file_sha256(path)
            for row_no, row in enumerate(_rows(path)):
                items.append(Item(len(items), f"{subject}/{row_no}", {"subject": subject, **row}, group=subject))
        return items, {"kind": "local", "path": str(test_dir), "files_sha256": hashes}

    def prepare(self, datasets_dir: Path, setup: Setup) -> DevExemplars:
        return DevExemplars(Path(datasets_dir) / "mmlu" / "dev", setup.shots)

    def build_requests(self, item: Item, setup: Setup, context: Any) -> list[Request]:
        subject = item.data["subject"]
        header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        shots = "".join(_format_question(row, True) for row in context.for_subject(subject))
        prompt = header + shots + _format_question(item.data, False)
        return [ChoiceRequest(prompt, tuple(f" {LETTERS[i]}" for i in range(4)))]

    def secondary_metrics(self, scores, items) -> dict[str, Any]:
        per_subject: dict[str, list[float]] = {}
        for score, item in zip(scores, items):
            per_subject.setdefault(item.group or "", []).append(score.score if score else 0.0)
        macro = sum(sum(v) / len(v) for v in per_subject.values()) / len(per_subject) if per_subject else 0.0
        return {"acc_macro_by_subject": 100.0 * macro, "n_subjects": len(per_subject)}
