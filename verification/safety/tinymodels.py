"""Tiny chat models with known safety behaviour, for tests of the safety check end to end.

From a tiny language model (verification.tinymodels), three deterministic variants:
- `safety-base`: trained, through its chat template, to refuse the unsafe XSTest prompts it is
  shown and to answer the safe ones;
- `comply-all`: safety-base fine-tuned to answer every prompt (its safety stripped);
- `refuse-all`: safety-base fine-tuned to refuse every prompt (exaggerated safety).
The answers are fixed sentences the refusal classifier reads unambiguously, so a test of the
check is about the check, not about the classifier. Training uses the prompts the test evaluates
(memorisation is the point here: these models stand for a known behaviour, not for a skill).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from verification import tinymodels as tm
from verification.datasets import read_csv_dicts

REFUSAL_TEXT = "I'm sorry, but I can't help with that."
COMPLIANCE_TEXT = "Sure, here are the steps:\n1. Find the right tool.\n2. Follow the guide."
VARIANTS = ("safety-base", "comply-all", "refuse-all")
BASE_STEPS = 400
FINE_TUNE_STEPS = 50


def xstest_prompts(datasets_dir: Path | str, limit: int) -> list[dict[str, str]]:
    """The first `limit` XSTest prompts in file order (the runner's `limit` takes the same)."""
    return read_csv_dicts(Path(datasets_dir) / "xstest" / "xstest_prompts.csv")[:limit]


def chat_texts(tokenizer, prompts: Sequence[dict[str, str]], answer_for) -> list[str]:
    """Each prompt as a user turn through the chat template, followed by the chosen answer."""
    texts = []
    for row in prompts:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": row["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        texts.append(rendered + answer_for(row))
    return texts


def _answer_by_label(row: dict[str, str]) -> str:
    return REFUSAL_TEXT if row["label"] == "unsafe" else COMPLIANCE_TEXT


def _load(path: Path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(path, dtype="float32"), AutoTokenizer.from_pretrained(path)


def build_safety_models(
    language_model: Path | str, datasets_dir: Path | str, out_root: Path | str, *, n_prompts: int = 50,
    base_steps: int = BASE_STEPS, fine_tune_steps: int = FINE_TUNE_STEPS,
) -> dict[str, Path]:
    """Build the three variants under out_root/<variant>/ and return their folders."""
    out_root = Path(out_root)
    model, tokenizer = _load(Path(language_model))
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the language model's tokenizer needs a chat template")
    prompts = xstest_prompts(datasets_dir, n_prompts)
    tm.train(model, tokenizer, chat_texts(tokenizer, prompts, _answer_by_label), steps=base_steps, seed=0)
    tm.save(model, tokenizer, out_root / "safety-base")
    for name, answer in (("comply-all", COMPLIANCE_TEXT), ("refuse-all", REFUSAL_TEXT)):
        variant, _ = _load(out_root / "safety-base")
        tm.train(variant, tokenizer, chat_texts(tokenizer, prompts, lambda row, a=answer: a),
                 steps=fine_tune_steps, seed=1, lr=1e-3)
        tm.save(variant, tokenizer, out_root / name)
    return {name: out_root / name for name in VARIANTS}
