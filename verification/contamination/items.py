"""The texts the probes read: items of the public benchmarks being verified (first `limit`, the
same items the run scored), GSM8K train and the Skywork reference set (Skywork Δ), and fresh
items the model cannot have seen (gsm_fresh, Min-K%++'s comparison set).

Benchmark items are loaded through the benchmark registry when it knows the slug, so the probes
read exactly what the run scored; GSM8K has a direct reader as well so the probes work from a
bare datasets directory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verification.benchmarks import gsm_fresh, registry
from verification.datasets import read_jsonl

SKYWORK_REF_FILE = "skywork_gsm8k_ref/mock_gsm8k_test_public.jsonl"
# Which question-like field carries an item's text, by benchmark schema.
TEXT_FIELDS = ("question", "problem", "prompt", "text")


@dataclass(frozen=True)
class ProbeItem:
    index: int
    item_id: str
    question: str
    answer: str | None = None  # worked solution where the benchmark has one (GSM8K)

    @property
    def full_text(self) -> str:
        return f"{self.question}\n{self.answer}" if self.answer else self.question


class ProbeDataUnavailable(FileNotFoundError):
    """The data a probe needs is missing (the message names the file, never an item)."""


def _gsm8k_split(datasets_dir: Path, split: str) -> list[dict[str, Any]]:
    path = Path(datasets_dir) / "gsm8k" / f"{split}.jsonl"
    if not path.is_file():
        raise ProbeDataUnavailable(f"GSM8K {split} split not found at {path}")
    return read_jsonl(path)


def _registry_items(slug: str, datasets_dir: Path, limit: int | None) -> list[ProbeItem] | None:
    try:
        spec = registry.get(slug)
    except KeyError:
        return None
    dataset = spec.load(datasets_dir, limit=limit)
    items = []
    for item in dataset.items:
        text = next((item.data[k] for k in TEXT_FIELDS if isinstance(item.data.get(k), str)), None)
        if text:
            answer = item.data.get("answer") if isinstance(item.data.get("answer"), str) else None
            items.append(ProbeItem(item.index, item.item_id, text, answer))
    return items


def benchmark_items(slug: str, datasets_dir: str | Path, limit: int | None) -> list[ProbeItem]:
    """The first `limit` items of a public benchmark, as the run scored them."""
    datasets_dir = Path(datasets_dir)
    if slug == "gsm8k":
        rows = _gsm8k_split(datasets_dir, "test")[: limit if limit is not None else None]
        return [ProbeItem(i, str(i), row["question"], row["answer"]) for i, row in enumerate(rows)]
    items = _registry_items(slug, datasets_dir, limit)
    if items is None:
        raise ProbeDataUnavailable(f"no loader for benchmark {slug!r}")
    return items


def gsm8k_train_sample(datasets_dir: str | Path, n: int, seed: int) -> list[ProbeItem]:
    """A seeded random sample of GSM8K train (Skywork's L_train)."""
    rows = _gsm8k_split(Path(datasets_dir), "train")
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    return [ProbeItem(i, f"train/{i}", rows[i]["question"], rows[i]["answer"]) for i in picked]


def skywork_reference(datasets_dir: str | Path, n: int | None = None, seed: int = 0) -> list[str]:
    """Skywork's 706 GSM8K-style reference texts (question and solution joined), or a seeded
    sample of n of them."""
    path = Path(datasets_dir) / SKYWORK_REF_FILE
    if not path.is_file():
        raise ProbeDataUnavailable(f"Skywork reference set not found at {path}")
    texts = [row["text"] for row in read_jsonl(path) if isinstance(row.get("text"), str)]
    if n is not None and n < len(texts):
        picked = sorted(random.Random(seed).sample(range(len(texts)), n))
        texts = [texts[i] for i in picked]
    return texts


def fresh_items(seed: int, n: int) -> list[ProbeItem]:
    """Freshly generated GSM-style items (cannot be in any training set)."""
    return [
        ProbeItem(i, item["id"], item["question"], item["answer"])
        for i, item in enumerate(gsm_fresh.generate(seed, n))
    ]
