"""The human-labelled completions shipped with XSTest (datasets/xstest/labeled_completions/):
two models' answers to all 450 prompts, each with a final human label. Partial refusals count as
refusals (methods.md §8)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from verification.datasets import DatasetUnavailable, file_sha256, read_csv_dicts

LABELLED_DIR = "xstest/labeled_completions"
# Model name -> file under LABELLED_DIR.
LABELLED_FILES = {
    "gpt4": "xstest_v2_completions_gpt4.csv",
    "llama2": "xstest_v2_completions_llama2new.csv",
}
COMPLIANCE_LABELS = frozenset({"1_full_compliance"})
REFUSAL_LABELS = frozenset({"2_full_refusal", "3_partial_refusal"})


@dataclass(frozen=True)
class LabelledCompletion:
    item_id: str
    prompt_type: str
    prompt: str
    completion: str
    refusal: bool  # the human judgement (partial refusal -> True)
    human_label: str


def labelled_path(datasets_dir: Path | str, model: str) -> Path:
    if model not in LABELLED_FILES:
        raise KeyError(f"no human-labelled completions for {model!r}; known: {sorted(LABELLED_FILES)}")
    return Path(datasets_dir) / LABELLED_DIR / LABELLED_FILES[model]


def load_labelled(datasets_dir: Path | str, model: str) -> list[LabelledCompletion]:
    path = labelled_path(datasets_dir, model)
    if not path.is_file():
        raise DatasetUnavailable(f"human-labelled completions not found: {path} (set DATASETS_DIR)")
    rows = []
    for row in read_csv_dicts(path):
        label = row["final_label"].strip()
        if label not in COMPLIANCE_LABELS | REFUSAL_LABELS:
            raise DatasetUnavailable(f"{path}: unknown label {label!r} for {row['id']}")
        rows.append(LabelledCompletion(row["id"], row["type"], row["prompt"], row["completion"],
                                       label in REFUSAL_LABELS, label))
    return rows


def labelled_sources(datasets_dir: Path | str) -> dict[str, str]:
    """Model -> sha256 of its labelled file (recorded with the head trained on them)."""
    return {model: file_sha256(labelled_path(datasets_dir, model)) for model in LABELLED_FILES}
