"""Tiny but real causal language models, for tests, the quickstart demo and performance scripts.

They are ordinary transformers Llama models (head_dim 32, the smallest head size the vLLM CPU
attention supports) with a byte-level BPE tokenizer trained on benchmark-style text, saved as
safetensors and installed into a real huggingface_hub cache layout
(`models--org--name/snapshots/<sha>/`, `refs/main`), so the production code paths that call
huggingface_hub, transformers and vLLM run on them unchanged with HF_HUB_OFFLINE=1.

Everything is deterministic for a given seed: the same call produces the same weights and the
same snapshot sha, which lets test sessions cache builds on disk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# A minimal chat template: enough for "chat template on" setups to differ from plain prompts.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4  # head_dim = 128 / 4 = 32
    num_kv_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False


@dataclass(frozen=True)
class TinyModel:
    repo_id: str
    sha: str
    path: Path  # the snapshot directory inside the HF cache


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2048, special_tokens: Sequence[str] = ()):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD, *special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, clean_up_tokenization_spaces=False
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def llama_config(tokenizer, spec: TinySpec = TinySpec(), **overrides: Any):
    from transformers import LlamaConfig

    values: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.hidden_size // spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rope_theta=spec.rope_theta,
        rms_norm_eps=1e-5,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    values.update(overrides)
    return LlamaConfig(**values)


def new_model(tokenizer, seed: int = 0, spec: TinySpec = TinySpec(), **config_overrides: Any):
    """A freshly initialised LlamaForCausalLM; the seed fixes the initial weights."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(tokenizer, spec, **config_overrides))
    return model.to(torch.float32).eval()


def _token_stream(tokenizer, texts: Sequence[str]) -> list[int]:
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    return ids


def train(
    model,
    tokenizer,
    texts: Sequence[str],
    steps: int,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int = 8,
    seq_len: int = 128,
    params: Iterable | None = None,
):
    """Deterministic next-token training on random windows of the concatenated texts.

    `params` restricts which parameters are updated (e.g. only new embedding rows' tensors).
    """
    import torch

    stream = _token_stream(tokenizer, texts)
    if len(stream) < seq_len + 1:
        # Short corpora (a handful of items to memorise) are repeated to fill a window.
        stream = stream * ((seq_len + 1) // max(len(stream), 1) + 1)
    data = torch.tensor(stream, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(list(params) if params is not None else model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    high = len(data) - seq_len - 1
    for _ in range(steps):
        starts = torch.randint(0, high + 1, (batch_size,), generator=generator)
        batch = torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()])
        logits = model(input_ids=batch[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return model


def save(model, tokenizer, out_dir: Path | str, extra_files: dict[str, str] | None = None) -> Path:
    """config.json, model.safetensors, tokenizer files, generation_config.json (+ extra files)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for name, text in (extra_files or {}).items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return out


def snapshot_sha(model_dir: Path) -> str:
    """A deterministic 40-hex 'commit sha' derived from the files' names and contents."""
    digest = hashlib.sha1()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model_dir)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def install_in_hf_cache(
    model_dir: Path | str, cache_dir: Path | str, repo_id: str, *, ref: str = "main", sha: str | None = None
) -> str:
    """Copy a saved model into the huggingface_hub cache layout and point `refs/<ref>` at it."""
    model_dir = Path(model_dir)
    sha = sha or snapshot_sha(model_dir)
    org, name = repo_id.split("/", 1)
    repo_root = Path(cache_dir) / f"models--{org}--{name}"
    snapshot = repo_root / "snapshots" / sha
    if not snapshot.exists():
        tmp = repo_root / "snapshots" / f".{sha}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(model_dir, tmp)
        tmp.replace(snapshot)
    refs = repo_root / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / ref).write_text(sha)
    return sha


def corpus_texts(datasets_dir: Path | str, limit: int | None = 2000) -> list[str]:
    """Benchmark-style training text the models can learn from without seeing test items:
    GSM8K *train* questions with their solutions."""
    path = Path(datasets_dir) / "gsm8k" / "train.jsonl"
    texts: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(f"Question: {row['question']}\nAnswer: {row['answer']}")
            if limit is not None and len(texts) >= limit:
                break
    return texts


def spec_fingerprint(spec: TinySpec = TinySpec()) -> str:
    return hashlib.sha1(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
