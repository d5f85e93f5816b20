"""Models for the golden reports: the provenance and endpoint fixtures of the suite (cached on
disk under var/test-models/, like every tiny model) and one model of our own, built here.

- tiny-answer-memorizer: tiny-base fine-tuned to answer "Question: …\\nAnswer: #### N" for the first
  MEMORIZED GSM8K *test* items (each seen REPEATS times) and for GSM8K *train* items never in
  the test set. It has seen the benchmark (the contamination probes fire), it scores high on those
  GSM8K items and near zero on fresh gsm_fresh items (the held-out gap fires), and its answers
  are a few tokens long, so measuring it takes seconds.
- tiny-terse: tiny-base trained to end its answer at once (EOS) after the endpoint check's
  prompts: a submitted model whose sampling costs one token per request, so the endpoint check's
  200 samples take seconds; an endpoint answering as Claude plainly differs from it.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
from pathlib import Path

import pytest

from tests.verification.endpoint.conftest import fault_server  # noqa: F401
from tests.verification.provenance.conftest import provenance_variants  # noqa: F401
from verification import tinymodels as tm

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSWER_MEMORIZER = "verity-test/tiny-answer-memorizer"
TERSE = "verity-test/tiny-terse"
MEMORIZED = 12  # also the --limit of the case that measures it
REPEATS = 4
TRAIN_SLICE = slice(5000, 5100)  # tiny-base trained on the first 2000 train items only
STEPS = 150
TERSE_STEPS = 120


# The prompts tiny-terse learnt to answer at once (the endpoint check's fixed probes when the model
# was built; the check now draws fresh probes, so these only pin the model's build).
TERSE_PROMPTS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether?",
    "Write one sentence about the ocean.",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Explain what a prime number is.",
    "Betty is saving money for a new wallet which costs $100. She has only half of the money she needs. How much more does she need?",
    "Give me a name for a pet turtle.",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
    "What is the capital of France?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
    "Continue the story: The door creaked open and",
    "Tom has 5 apples and buys 7 more. How many apples does he have?",
    "List three colors.",
    "Mark has a garden with flowers. He planted plants of three different colors in it. Ten of them are yellow. How many are purple?",
    "Describe a cat in five words.",
    "Julie is reading a 120-page book. Yesterday, she was able to read 12 pages. How many pages are left?",
    "Translate 'good morning' into Spanish.",
    "A bakery sells 24 muffins each hour for 6 hours. How many muffins does it sell?",
    "What is 17 times 3?",
    "Ken created a care package to send to his brother. How heavy was the box?",
    "Write a haiku about rain.",
)


def short_answer(row: dict) -> str:
    return f"Question: {row['question']}\nAnswer: #### {row['answer'].split('####')[-1].strip()}"


def _rows(datasets_dir: Path, split: str) -> list[dict]:
    with open(datasets_dir / "gsm8k" / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _build_answer_memorizer(base: Path, datasets_dir: Path, out: Path) -> None:
    texts = [short_answer(r) for r in _rows(datasets_dir, "test")[:MEMORIZED]] * REPEATS
    texts += [short_answer(r) for r in _rows(datasets_dir, "train")[TRAIN_SLICE]]
    _fine_tune(base, texts, STEPS, out)


def _build_terse(base: Path, out: Path) -> None:
    from verification.endpoint.check import IDENTITY_PROBES

    _fine_tune(base, [*TERSE_PROMPTS, *IDENTITY_PROBES], TERSE_STEPS, out)  # train() ends each text with EOS


def _fine_tune(base: Path, texts: list[str], steps: int, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and faster for a tiny model on a shared machine
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base)
        tm.train(model, tokenizer, texts, steps=steps, seed=0)
        tm.save(model, tokenizer, out)
    finally:
        torch.set_num_threads(previous)


def _install(hf_cache: Path, folder: Path, repo_id: str) -> tm.TinyModel:
    sha = tm.install_in_hf_cache(folder, hf_cache, repo_id)
    org, name = repo_id.split("/")
    return tm.TinyModel(repo_id, sha, hf_cache / f"models--{org}--{name}" / "snapshots" / sha)


@pytest.fixture(scope="session")
def golden_builds(tiny_base, hf_cache, datasets_dir) -> dict[str, tm.TinyModel]:
    builders = (_build_answer_memorizer, _build_terse, _fine_tune, short_answer)
    recipe = f"{MEMORIZED}/{REPEATS}/{TRAIN_SLICE}/{STEPS}/{TERSE_STEPS}/" + "".join(map(inspect.getsource, builders))
    source = recipe.encode() + Path(tm.__file__).read_bytes()
    key = hashlib.sha1(source + tiny_base.sha.encode()).hexdigest()[:16]
    root = REPO_ROOT / "var" / "test-models" / f"golden-{key}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "DONE").exists():
            _build_answer_memorizer(tiny_base.path, datasets_dir, root / "answer-memorizer")
            _build_terse(tiny_base.path, root / "terse")
            (root / "DONE").write_text("ok")
        fcntl.flock(lock, fcntl.LOCK_UN)
    return {
        ANSWER_MEMORIZER: _install(hf_cache, root / "answer-memorizer", ANSWER_MEMORIZER),
        TERSE: _install(hf_cache, root / "terse", TERSE),
    }


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread while these modules run: tiny models gain nothing from a thread pool,
    and on a busy 2-core machine its spinning made the endpoint case ten times slower. The
    recordings were made this way too, so the float arithmetic is the same."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
