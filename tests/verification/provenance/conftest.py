"""Real tiny model variants for the provenance tests, derived from the shared tiny bases.

Built once (session scope) and kept on disk under var/test-models/provenance-<key>/ (key = hash of
this file, the tinymodels source and the base's sha), like the shared tiny models, so later
sessions reuse them:

- full-ft:       tiny-base (A) fine-tuned on all parameters on other text;
- lora-merge:    a rank-4 peft LoRA on every linear layer of A, trained, merged with peft;
- tokens-raw:    A with <thinking>, </thinking>, <reflection> added to its tokenizer and rows
                 created by transformers' resize_token_embeddings (mean init), not trained;
- tokens-trained: the same model trained on text that uses the new tokens;
- long-context:  full-ft with a config edited to claim an 8x longer context with llama3 rope scaling.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from verification import tinymodels as tm

REPO_ROOT = Path(__file__).resolve().parents[3]
NEW_TOKENS = ("<thinking>", "</thinking>", "<reflection>")
LORA_RANK = 4


def _texts(datasets_dir: Path) -> list[str]:
    return tm.corpus_texts(datasets_dir, limit=4000)


def _load(path: Path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(path, dtype="float32"), AutoTokenizer.from_pretrained(path)


def _full_fine_tune(base: Path, texts: list[str], out: Path) -> None:
    model, tokenizer = _load(base)
    tm.train(model, tokenizer, texts[3000:3400], steps=40, seed=5, lr=1e-3)
    tm.save(model, tokenizer, out)


def _lora_merge(base: Path, texts: list[str], out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    model, tokenizer = _load(base)
    torch.manual_seed(11)
    config = LoraConfig(
        r=LORA_RANK,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    peft_model = get_peft_model(model, config)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    tm.train(peft_model, tokenizer, texts[3000:3400], steps=40, seed=5, lr=3e-3, params=trainable)
    merged = peft_model.merge_and_unload()
    tm.save(merged, tokenizer, out)


def _with_new_tokens(base: Path):
    model, tokenizer = _load(base)
    tokenizer.add_special_tokens({"additional_special_tokens": list(NEW_TOKENS)})
    model.resize_token_embeddings(len(tokenizer))  # transformers' default mean initialisation
    return model, tokenizer


def _tokens_raw(base: Path, out: Path) -> None:
    model, tokenizer = _with_new_tokens(base)
    tm.save(model, tokenizer, out)


def _tokens_trained(base: Path, texts: list[str], out: Path) -> None:
    model, tokenizer = _with_new_tokens(base)
    thinking = [f"{NEW_TOKENS[0]} {t} {NEW_TOKENS[1]} {NEW_TOKENS[2]} checked." for t in texts[3400:3600]]
    tm.train(model, tokenizer, thinking, steps=60, seed=6, lr=3e-3)
    tm.save(model, tokenizer, out)


def _long_context(full_ft: Path, out: Path) -> None:
    shutil.copytree(full_ft, out)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    original = config["max_position_embeddings"]
    config["max_position_embeddings"] = original * 8
    config["rope_parameters"] = {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": original,
    }
    config_path.write_text(json.dumps(config, indent=2))


def _build_all(base: Path, texts: list[str], root: Path) -> None:
    import torch

    # One intra-op thread: on a shared 2-core machine the tiny model trains faster without the
    # thread pool's spinning (and the builds are deterministic either way).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _full_fine_tune(base, texts, root / "full-ft")
        _lora_merge(base, texts, root / "lora-merge")
        _tokens_raw(base, root / "tokens-raw")
        _tokens_trained(base, texts, root / "tokens-trained")
        _long_context(root / "full-ft", root / "long-context")
    finally:
        torch.set_num_threads(previous)
    (root / "DONE").write_text("ok")


def _key(base_sha: str) -> str:
    digest = hashlib.sha1(Path(__file__).read_bytes() + Path(tm.__file__).read_bytes() + base_sha.encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def provenance_variants(tiny_base, datasets_dir) -> dict[str, Path]:
    root = REPO_ROOT / "var" / "test-models" / f"provenance-{_key(tiny_base.sha)}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "DONE").exists():
            if root.exists():
                shutil.rmtree(root)
            _build_all(tiny_base.path, _texts(datasets_dir), root)
        fcntl.flock(lock, fcntl.LOCK_UN)
    return {name: root / name for name in ("full-ft", "lora-merge", "tokens-raw", "tokens-trained", "long-context")}
