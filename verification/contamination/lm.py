"""Direct transformers access for the probes that need more than a backend gives: the full
next-token distribution at every position (Min-K%++), per-text NLL totals (Skywork Δ), and greedy
continuations (completion probe).

The model is loaded from a local snapshot directory (`model_dir`); nothing is downloaded. On a
machine with CUDA the model goes to the GPU in its stored dtype, else it runs on CPU in float32.
Texts are truncated to `max_tokens` (ours: 512) so one hostile or huge item cannot exhaust memory.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 512
DEFAULT_BATCH_SIZE = 16
# Floats of logits one batch may hold (~0.8 GB in float32): bounds memory for big vocabularies.
LOGITS_BUDGET = 200_000_000


class ProbeModelError(RuntimeError):
    """The model directory could not be loaded for probing (the message names the directory,
    never an item)."""


@dataclass
class TokenStats:
    """Per predicted token of one text: log p(x_t), and μ_t, σ_t of log p over the vocabulary
    under the model's own next-token distribution (Min-K%++, Zhang et al. 2024)."""

    logprob: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.logprob.shape[0])

    @property
    def nll_sum(self) -> float:
        return float(-self.logprob.sum())


class ProbeModel:
    """A causal LM loaded once for several probes."""

    def __init__(self, model_dir: str | Path, *, max_tokens: int = DEFAULT_MAX_TOKENS, batch_size: int = DEFAULT_BATCH_SIZE):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            dtype = "auto" if self.device == "cuda" else torch.float32
            self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype).to(self.device).eval()
        except Exception as exc:  # a broken or hostile repo: say which, lose nothing else
            raise ProbeModelError(f"cannot load {self.model_dir} for contamination probes: {type(exc).__name__}: {exc}") from exc
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._special_ids = set(self.tokenizer.all_special_ids)

    # ---- tokenisation ---------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids with the tokenizer's usual special tokens (BOS), truncated."""
        return self.tokenizer(text)["input_ids"][: self.max_tokens]

    def split_at_half(self, text: str) -> tuple[list[int], list[int]]:
        """(prompt ids incl. leading special tokens + first half of the text's tokens, the true
        second half's ids)."""
        ids = self.encode(text)
        lead = 0
        while lead < len(ids) and ids[lead] in self._special_ids:
            lead += 1
        body = [t for t in ids[lead:] if t not in self._special_ids]
        half = len(body) // 2
        return ids[:lead] + body[:half], body[half:]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ---- forward passes -------------------------------------------------------------------
    def _batches(self, encoded: list[list[int]]) -> Iterator[tuple[list[int], list[list[int]]]]:
        """Length-sorted batches, small enough that batch × length × vocabulary floats stay
        under LOGITS_BUDGET (a 128k vocabulary at 512 tokens allows ~3 texts per batch)."""
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        vocab = max(int(getattr(self.model.config, "vocab_size", 0) or 0), 1)
        start = 0
        while start < len(order):
            longest = max(len(encoded[order[min(start + self.batch_size, len(order)) - 1]]), 1)
            size = max(1, min(self.batch_size, LOGITS_BUDGET // (longest * vocab)))
            chunk = order[start : start + size]
            start += size
            yield chunk, [encoded[i] for i in chunk]

    def token_stats(self, texts: Sequence[str]) -> list[TokenStats]:
        """TokenStats per text (the first token has no prediction and is skipped)."""
        import torch

        encoded = [self.encode(t) for t in texts]
        out: list[TokenStats | None] = [None] * len(texts)
        pad = self.tokenizer.pad_token_id
        for chunk, seqs in self._batches(encoded):
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, seq in enumerate(seqs):
                ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[row, : len(seq)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                probs = logp.exp()
                mu = (probs * logp).sum(-1)
                second = (probs * logp * logp).sum(-1)
                sigma = (second - mu * mu).clamp_min(0).sqrt()
                target = ids[:, 1:].to(self.device)
                token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            for row, index in enumerate(chunk):
                n = len(seqs[row]) - 1
                out[index] = TokenStats(
                    logprob=token_logp[row, :n].cpu().numpy().astype(np.float64),
                    mu=mu[row, :n].cpu().numpy().astype(np.float64),
                    sigma=sigma[row, :n].cpu().numpy().astype(np.float64),
                )
        return [s for s in out if s is not None]

    def greedy_continuations(self, prompts: Sequence[list[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        """Greedy (temperature 0) continuation ids per prompt, left-padded batches."""
        import torch

        results: list[list[int]] = [[] for _ in prompts]
        pad = self.tokenizer.pad_token_id
        for chunk, seqs in self._batches([list(p) for p in prompts]):
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, seq in enumerate(seqs):
                ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                mask[row, width - len(seq) :] = 1
            budget = max(1, max(max_new_tokens[i] for i in chunk))
            with torch.no_grad():
                generated = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    do_sample=False, max_new_tokens=budget, pad_token_id=pad,
                )
            for row, index in enumerate(chunk):
                new = generated[row, width:].tolist()[: max_new_tokens[index]]
                results[index] = [t for t in new if t != pad]
        return results

    def close(self) -> None:
        del self.model
        gc.collect()


@contextmanager
def probe_model(model_dir: str | Path, **kwargs) -> Iterator[ProbeModel]:
    model = ProbeModel(model_dir, **kwargs)
    try:
        yield model
    finally:
        model.close()


def token_distribution_stats(model_dir: str | Path, texts: Sequence[str], **kwargs) -> list[TokenStats]:
    """Full-vocabulary per-token statistics of `texts` under the model in `model_dir`."""
    with probe_model(model_dir, **kwargs) as model:
        return model.token_stats(texts)
