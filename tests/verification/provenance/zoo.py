"""A zoo of tiny real models for lineage without a claimed base, sibling bases and untrained tokens.

Built from the shared tiny base A (tests/fixtures_models.py) and kept on disk under
var/test-models/provenance-zoo-<key>/ (key = hash of this file, the tinymodels source, the base's
sha and the seed), like the other fixture models. `build_zoo` is also what
performance/zoo_provenance_rates.py calls, with other seeds.

- base-b:        A continued-pretrained (lr 1e-3, BASE_B_STEPS steps on GSM8K-train text A never saw):
                 a sibling base, close to A but distinct (like Llama 3.1 from Llama 3);
- ft-a, ft-b:    fine-tunes of A and of B (FT_STEPS steps, lr 1e-3, on a third slice of text);
- ft-a-little, ft-b-little: FEW_STEPS steps at lr 1e-4 (a barely moved fine-tune);
- ft-a-much, ft-b-much: MANY_STEPS steps at lr 1e-3 (an update larger than the siblings' gap);
- ft-a-on-b-text: A fine-tuned on B's own continued-pretraining text (the update points toward B:
                 the hardest honest-looking case for the sibling rule);
- scratch-reserved: a model trained from scratch whose tokenizer declares RESERVED placeholder
                 special tokens (zero rows, identical, never trained, as in Llama 3's base) next to
                 chat-turn tokens its template writes and its training used: honest, never flagged;
- scratch-raw:   scratch-reserved with <thinking>-style tokens added as special tokens, written by
                 its chat template, rows from resize_token_embeddings, never trained (Reflection).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fixtures_models import build_once
from verification import tinymodels as tm

REPO_ROOT = Path(__file__).resolve().parents[3]
BASE_B_STEPS = 100
FT_STEPS = 40
FEW_STEPS = 5
MANY_STEPS = 150
SCRATCH_STEPS = 120
RESERVED = tuple(f"<|reserved_special_token_{i}|>" for i in range(32))
TURN_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>")
THINKING = ("<thinking>", "</thinking>", "<reflection>")
TURN_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{% else %}<|assistant|>{% endif %}"
    "{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
THINKING_TEMPLATE = TURN_TEMPLATE.replace(
    "{% if add_generation_prompt %}<|assistant|>{% endif %}",
    "{% if add_generation_prompt %}<|assistant|><thinking>{% endif %}",
)
NAMES = (
    "base-b", "ft-a", "ft-b", "ft-a-little", "ft-b-little", "ft-a-much", "ft-b-much", "ft-a-on-b-text",
    "scratch-reserved", "scratch-raw",
)


def _load(path: Path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(path, dtype="float32"), AutoTokenizer.from_pretrained(path)


def continued(base: Path, texts: list[str], out: Path, *, steps: int, lr: float, seed: int) -> Path:
    """`base` trained further on `texts` with every parameter (a fine-tune or continued pretraining)."""
    model, tokenizer = _load(base)
    tm.train(model, tokenizer, texts, steps=steps, seed=seed, lr=lr)
    return tm.save(model, tokenizer, out)


def _chat_texts(texts: list[str]) -> list[str]:
    out = []
    for text in texts:
        question, _, answer = text.partition("\nAnswer: ")
        out.append(f"<|user|>{question.removeprefix('Question: ')}<|end|><|assistant|>{answer}<|end|>")
    return out


def scratch_reserved(texts: list[str], out: Path, *, seed: int) -> Path:
    """From scratch: turn tokens trained through chat-formatted text, reserved tokens never used."""
    import torch

    tokenizer = tm.build_tokenizer(texts[:2000], vocab_size=2048, special_tokens=(*TURN_TOKENS, *RESERVED))
    tokenizer.chat_template = TURN_TEMPLATE
    model = tm.new_model(tokenizer, seed=seed)
    tm.train(model, tokenizer, _chat_texts(texts[:2000]), steps=SCRATCH_STEPS, seed=seed, lr=3e-3)
    ids = tokenizer.convert_tokens_to_ids(list(RESERVED))
    with torch.no_grad():  # as in Llama 3's base: the placeholders' rows are zero
        model.get_input_embeddings().weight[ids] = 0.0
        model.get_output_embeddings().weight[ids] = 0.0
    return tm.save(model, tokenizer, out)


def with_untrained_thinking(source: Path, out: Path) -> Path:
    """Reflection's recipe: special tokens added and written by the chat template, rows from
    resize_token_embeddings (the mean of the old rows), never trained."""
    model, tokenizer = _load(source)
    tokenizer.add_special_tokens({"additional_special_tokens": list(THINKING)})
    model.resize_token_embeddings(len(tokenizer))
    tokenizer.chat_template = THINKING_TEMPLATE
    return tm.save(model, tokenizer, out)


def build_zoo(base_a: Path, texts: list[str], root: Path, seed: int = 0) -> dict[str, Path]:
    """Every zoo model under `root` (A itself is not copied). `seed` varies every training run."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    s = 100 + 10 * seed
    other_text, ft_text = texts[2000:3000], texts[3000:3400]
    try:
        b = continued(base_a, other_text, root / "base-b", steps=BASE_B_STEPS, lr=1e-3, seed=s)
        continued(base_a, ft_text, root / "ft-a", steps=FT_STEPS, lr=1e-3, seed=s + 1)
        continued(b, ft_text, root / "ft-b", steps=FT_STEPS, lr=1e-3, seed=s + 2)
        continued(base_a, ft_text, root / "ft-a-little", steps=FEW_STEPS, lr=1e-4, seed=s + 3)
        continued(b, ft_text, root / "ft-b-little", steps=FEW_STEPS, lr=1e-4, seed=s + 4)
        continued(base_a, texts[3400:4000], root / "ft-a-much", steps=MANY_STEPS, lr=1e-3, seed=s + 5)
        continued(b, texts[3400:4000], root / "ft-b-much", steps=MANY_STEPS, lr=1e-3, seed=s + 6)
        continued(base_a, other_text, root / "ft-a-on-b-text", steps=FT_STEPS, lr=1e-3, seed=s + 7)
        scratch_reserved(texts, root / "scratch-reserved", seed=s + 8)
        with_untrained_thinking(root / "scratch-reserved", root / "scratch-raw")
    finally:
        torch.set_num_threads(previous)
    return {name: root / name for name in NAMES}


def zoo_key(base_sha: str, seed: int) -> str:
    digest = hashlib.sha1(Path(__file__).read_bytes() + Path(tm.__file__).read_bytes() + f"{base_sha}/{seed}".encode())
    return digest.hexdigest()[:16]


def cached_zoo(base_a: Path, base_sha: str, texts_for_build, seed: int = 0) -> dict[str, Path]:
    """The zoo for `seed`, built once under var/test-models/ (a file lock serialises builders)."""
    root = REPO_ROOT / "var" / "test-models" / f"provenance-zoo-{zoo_key(base_sha, seed)}"
    build_once(root, lambda out: build_zoo(base_a, texts_for_build(), out, seed))
    return {name: root / name for name in NAMES}


@pytest.fixture(scope="session")
def provenance_zoo(tiny_base, datasets_dir) -> dict[str, Path]:
    """The zoo for seed 0 (import this fixture into a test module to use it)."""
    return cached_zoo(tiny_base.path, tiny_base.sha, lambda: tm.corpus_texts(datasets_dir, limit=4000))
