"""The contamination zoo: tiny fine-tunes of one base whose truth is known, for the tests and
performance/zoo_contamination_rates.py.

- `train-only`: GSM8K *train* items only (legitimate in-domain training; must not be flagged);
- `leak`: the first `probed` GSM8K *test* items mixed into as many train items as `train-only`
  saw (the realistic leak: a benchmark copy swept up with in-domain data; must be flagged);
- `leak-small`: the same with only a tenth of the probed test items (near the detection limit);
- `test-only`: the probed test items alone (the crudest leak).

Each recipe is a full fine-tune (verification.tinymodels.train) of a saved base; the training
text format is the one the tiny models learn from (tinymodels.corpus_texts). Builds are
deterministic for a recipe and a base.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verification import tinymodels as tm

TRAIN_ITEMS = 160
STEPS = 240
# tiny-base (tests/fixtures_models.py) trained on the first 2000 train items; the zoo draws its
# train slices from beyond them so "train-only" is new in-domain data for the base.
TRAIN_OFFSET = 4000


@dataclass(frozen=True)
class ZooRecipe:
    name: str
    leaked_test: int  # the first N GSM8K test items are in the training text
    train_items: int
    train_offset: int
    steps: int = STEPS
    seed: int = 0

    @property
    def leaked(self) -> bool:
        return self.leaked_test > 0

    @property
    def key(self) -> str:
        return f"{self.name}-{self.leaked_test}-{self.train_items}-{self.train_offset}-{self.steps}-{self.seed}"


def gsm8k_rows(datasets_dir: Path | str, split: str) -> list[dict[str, Any]]:
    with (Path(datasets_dir) / "gsm8k" / f"{split}.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def training_text(row: dict[str, Any]) -> str:
    return f"Question: {row['question']}\nAnswer: {row['answer']}"


def recipes(probed: int, seed: int = 0) -> list[ZooRecipe]:
    """The zoo for a probe of the first `probed` test items; `seed` moves the train slice and
    the training order, so several seeds give independent honest and planted models."""
    offset = TRAIN_OFFSET + seed * TRAIN_ITEMS
    return [
        ZooRecipe("train-only", 0, TRAIN_ITEMS, offset, seed=seed),
        ZooRecipe("leak", probed, TRAIN_ITEMS, offset, seed=seed),
        ZooRecipe("leak-small", max(1, probed // 10), TRAIN_ITEMS, offset, seed=seed),
        ZooRecipe("test-only", probed, 0, offset, steps=STEPS // 2, seed=seed),
    ]


def corpus(recipe: ZooRecipe, datasets_dir: Path | str) -> list[str]:
    test = gsm8k_rows(datasets_dir, "test")[: recipe.leaked_test]
    train = gsm8k_rows(datasets_dir, "train")[recipe.train_offset : recipe.train_offset + recipe.train_items]
    texts = [training_text(r) for r in test + train]
    random.Random(recipe.seed).shuffle(texts)
    return texts


def build(recipe: ZooRecipe, base_dir: Path | str, out_dir: Path | str, datasets_dir: Path | str) -> Path:
    """Fine-tune the saved model in `base_dir` on the recipe's corpus; saved to `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    tm.train(model, tokenizer, corpus(recipe, datasets_dir), steps=recipe.steps, seed=recipe.seed)
    return tm.save(model, tokenizer, out_dir)


def build_all(recipes_: list[ZooRecipe], base_dir: Path | str, var_dir: Path | str, datasets_dir: Path | str) -> dict[str, Path]:
    """Build (once) every recipe on the base, under var_dir/test-models/contamination-<key>/,
    keyed by this module's and tinymodels' sources and the base snapshot: the tests and the
    rates script share the builds. Returns {recipe.key: folder}."""
    source = inspect.getsource(sys.modules[__name__]).encode() + Path(tm.__file__).read_bytes()
    source += tm.snapshot_sha(Path(base_dir)).encode()
    root = Path(var_dir) / "test-models" / f"contamination-{hashlib.sha1(source).hexdigest()[:16]}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for recipe in recipes_:
                if not (root / recipe.key / "DONE").exists():
                    build(recipe, base_dir, root / recipe.key, datasets_dir)
                    (root / recipe.key / "DONE").write_text("ok")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return {recipe.key: root / recipe.key for recipe in recipes_}
