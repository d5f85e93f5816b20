"""Two fine-tunes of tiny-base for the contamination tests, built once per session:

- tiny-memorizer: trained on the first MEMORIZED GSM8K *test* items (question + solution), i.e. a
  model that saw the benchmark;
- tiny-clean: the same base, same steps, same number of items and same format, but GSM8K *train*
  items from a slice tiny-base never saw: an honest in-domain fine-tune, the hardest control.

Builds are deterministic, so the saved folders are kept under var/test-models/ keyed by this
file's source, the tinymodels source and tiny-base's sha (like tests/fixtures_models.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
from pathlib import Path

import pytest

from verification import tinymodels as tm

REPO_ROOT = Path(__file__).resolve().parents[3]
MEMORIZED = 40  # also the --limit the probes run with
STEPS = 120
CLEAN_TRAIN_SLICE = slice(5000, 5000 + MEMORIZED)  # tiny-base trained on the first 2000 train items
# Probe settings shared by every test, so the probe cache serves the same model twice.
PROBE_SEED = 20261121
REFERENCE_SIZE = 80
PROBE_KW = {"limit": MEMORIZED, "seed": PROBE_SEED, "reference_size": REFERENCE_SIZE}


def _rows(datasets_dir: Path, split: str) -> list[dict]:
    with open(datasets_dir / "gsm8k" / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def as_training_text(row: dict) -> str:
    return f"Question: {row['question']}\nAnswer: {row['answer']}"


def _build(base_path: Path, texts: list[str], out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path)
    tm.train(model, tokenizer, texts, steps=STEPS, seed=0)
    tm.save(model, tokenizer, out)


@pytest.fixture(scope="session")
def contamination_models(tiny_base, hf_cache, datasets_dir) -> dict[str, tm.TinyModel]:
    # Keyed on what the weights depend on only, so editing the fixtures below reuses the builds.
    recipe = f"{MEMORIZED}/{STEPS}/{CLEAN_TRAIN_SLICE}/{inspect.getsource(_build)}/{inspect.getsource(as_training_text)}"
    source = recipe.encode() + Path(tm.__file__).read_bytes() + tiny_base.sha.encode()
    root = REPO_ROOT / "var" / "test-models" / f"contamination-{hashlib.sha1(source).hexdigest()[:16]}"
    root.parent.mkdir(parents=True, exist_ok=True)
    texts = {
        "memorizer": [as_training_text(r) for r in _rows(datasets_dir, "test")[:MEMORIZED]],
        "clean": [as_training_text(r) for r in _rows(datasets_dir, "train")[CLEAN_TRAIN_SLICE]],
    }
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "DONE").exists():
            for name, corpus in texts.items():
                _build(tiny_base.path, corpus, root / name)
            (root / "DONE").write_text("ok")
        fcntl.flock(lock, fcntl.LOCK_UN)
    models = {}
    for name in texts:
        repo_id = f"verity-test/tiny-{name}"
        sha = tm.install_in_hf_cache(root / name, hf_cache, repo_id)
        models[name] = tm.TinyModel(repo_id, sha, hf_cache / f"models--verity-test--tiny-{name}" / "snapshots" / sha)
    return models


@pytest.fixture(scope="session")
def contamination_results(contamination_models, tiny_base, datasets_dir):
    """check_contamination on both fine-tunes (GSM8K, --limit MEMORIZED, same seed); the base is
    probed once and reused from the probe cache."""
    from verification.contamination import check_contamination

    results = {}
    for name, model in contamination_models.items():
        results[name] = check_contamination(
            model.path, tiny_base.path, datasets_dir=datasets_dir,
            public_outcomes={"gsm8k": {"n": MEMORIZED, "correct": 0}}, **PROBE_KW,
        )
    return results
