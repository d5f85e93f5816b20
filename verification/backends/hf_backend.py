"""transformers on CPU: the light, deterministic fallback backend.

The model runs where its weights are: the workers open it on the CPU; a caller may move
`backend.model` to a GPU afterwards (performance/gpu_throughput.py --backend hf does), and every
tensor the backend makes follows the model there.

- generate: batched (left padding), greedy unless a request asks for sampling; explicit
  GenerationConfig built from our SamplingParams (the model's generation_config.json defaults
  are never used: what we pass is what we record).
- loglikelihood: one forward pass per batch of (context, continuation) pairs.
- choice_logprobs: one forward pass per batch of contexts; all single-token choices are read
  from the last position's distribution.

Tokenization is shared with the vLLM backend (verification/backends/encoding.py), so both
backends read identical token ids and differ only by numerics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria

from verification.backends.base import Backend, BackendError, ProgressCallback, describe_error
from verification.backends.encoding import (
    EncodedPair,
    PromptEncoder,
    package_versions,
    truncate_at_stop,
    truncate_pair,
)
from verification.records import (
    ChoiceRequest,
    ChoiceScores,
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    SamplingParams,
)
from verification.interrupts import reraise_interrupt


class _Counter:
    """Counts finished requests for the progress callback."""

    def __init__(self, progress: ProgressCallback | None):
        self.progress = progress
        self.done = 0

    def add(self, n: int) -> None:
        self.done += n
        if self.progress and n:
            self.progress(self.done)


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        batch_size: int = 16,
        max_model_len: int | None = None,
        num_threads: int | None = None,
        model_sha: str | None = None,
        repo_id: str | None = None,
        token_logprobs: bool = True,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if num_threads:
            torch.set_num_threads(num_threads)
        self.model_path = str(model_path)
        # Per-token logprobs of generations keep batch x steps x vocab logits in memory: cheap
        # for small vocabularies, worth switching off for a 150k-token vocabulary.
        self.token_logprobs = token_logprobs
        self.model_sha = model_sha
        self.repo_id = repo_id
        self.batch_size = max(1, int(batch_size))
        self.torch_dtype = getattr(torch, dtype, None)
        if not isinstance(self.torch_dtype, torch.dtype):
            raise BackendError(f"unknown dtype {dtype!r} (try float32 or bfloat16)")
        self.dtype = dtype
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.torch_dtype)
        except (OSError, ValueError) as error:
            raise BackendError(f"cannot load {self.model_path} with transformers: {error}") from error
        self.model.eval()
        self.encoder = PromptEncoder(self.tokenizer)
        config_len = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_model_len = int(max_model_len or config_len)
        self.pad_token_id = self._pad_token_id()
        self.eos_token_ids = self._eos_token_ids()

    # ------------------------------------------------------------------ setup helpers
    def _pad_token_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0

    def _eos_token_ids(self) -> list[int]:
        """Stop tokens: the tokenizer's EOS plus generation_config.json's eos ids (vLLM stops on
        both too). Only stop tokens are taken from generation_config, never sampling defaults."""
        ids: list[int] = []
        candidates: list[Any] = [self.tokenizer.eos_token_id]
        generation_config = getattr(self.model, "generation_config", None)
        if generation_config is not None:
            candidates.append(generation_config.eos_token_id)
        for value in candidates:
            for token_id in value if isinstance(value, (list, tuple)) else [value]:
                if token_id is not None and int(token_id) not in ids:
                    ids.append(int(token_id))
        return ids

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "versions": package_versions(),
            "model_path": self.model_path,
            "repo_id": self.repo_id,
            "model_sha": self.model_sha,
            "dtype": self.dtype,
            "device": self.device.type,
            "batch_size": self.batch_size,
            "max_model_len": self.max_model_len,
            "generation_config": "explicit (model generation_config.json defaults ignored; eos ids used as stop tokens)",
            "token_logprobs": self.token_logprobs,
            "chat_template": self.encoder.has_chat_template,
        }

    def close(self) -> None:
        self._closed_device = self.device
        self.model = None  # type: ignore[assignment]

    @property
    def device(self) -> torch.device:
        """Where the model's weights are, hence where its inputs must be made."""
        if self.model is None:
            return getattr(self, "_closed_device", torch.device("cpu"))
        return self.model.device

    # ------------------------------------------------------------------ tensor helpers
    def _left_padded(self, rows: Sequence[Sequence[int]]):
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention[i, width - len(row) :] = 1
        # Built on the CPU (one small copy per row), then moved in one copy each.
        return input_ids.to(self.device), attention.to(self.device)

    def _forward_tail_logprobs(self, rows: Sequence[Sequence[int]], keep: int):
        """log-softmax of the last `keep` positions of each row (left padded, so rows end
        together). Position p predicts token p+1."""
        input_ids, attention = self._left_padded(rows)
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids,
                attention_mask=attention,
                position_ids=position_ids,
                logits_to_keep=keep,
            ).logits
        return torch.log_softmax(logits.float(), dim=-1)

    # ------------------------------------------------------------------ generate
    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        counter = _Counter(progress)
        ready: list[tuple[int, list[int], str | None]] = []
        for index, (request, encoded) in enumerate(zip(requests, self.encoder.encode_prompts(requests))):
            try:
                if isinstance(encoded, Exception):
                    raise encoded
                self._check_generation_request(request.params, len(encoded.token_ids))
                ready.append((index, encoded.token_ids, encoded.note))
            except Exception as error:  # noqa: BLE001 - one bad request must not sink the batch
                reraise_interrupt(error)
                results[index] = Generation(error=describe_error(error))
                counter.add(1)
        # Group identical decoding settings, then batch by similar length (less padding).
        groups: dict[SamplingParams, list[tuple[int, list[int], str | None]]] = {}
        for item in ready:
            groups.setdefault(requests[item[0]].params, []).append(item)
        for params, items in groups.items():
            items.sort(key=lambda item: len(item[1]))
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                for index, generation in self._generate_batch(params, batch):
                    results[index] = generation
                counter.add(len(batch))
        return [r if r is not None else Generation(error="internal: no result") for r in results]

    def _check_generation_request(self, params: SamplingParams, prompt_len: int) -> None:
        if params.n != 1:
            raise ValueError(f"n={params.n}: send one request per sample (n must be 1)")
        if params.max_tokens < 1:
            raise ValueError(f"max_tokens={params.max_tokens}: must be at least 1")
        if prompt_len >= self.max_model_len:
            raise ValueError(f"prompt has {prompt_len} tokens; the context window is {self.max_model_len}")

    def _generate_batch(
        self, params: SamplingParams, batch: list[tuple[int, list[int], str | None]]
    ) -> list[tuple[int, Generation]]:
        try:
            return self._generate_batch_unsafe(params, batch)
        except Exception as error:  # noqa: BLE001
            reraise_interrupt(error)
            if len(batch) == 1:
                return [(batch[0][0], Generation(error=describe_error(error)))]
            # Isolate the culprit: rerun one by one so only the bad request carries the error.
            out: list[tuple[int, Generation]] = []
            for item in batch:
                out.extend(self._generate_batch(params, [item]))
            return out

    def _generate_batch_unsafe(
        self, params: SamplingParams, batch: list[tuple[int, list[int], str | None]]
    ) -> list[tuple[int, Generation]]:
        from transformers import GenerationConfig, StoppingCriteriaList

        input_ids, attention = self._left_padded([item[1] for item in batch])
        width = input_ids.shape[1]
        longest = max(len(item[1]) for item in batch)
        # Like vLLM, never run past the context window.
        max_new = min(params.max_tokens, self.max_model_len - longest)
        sampling = params.temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=sampling,
            temperature=params.temperature if sampling else None,
            top_p=params.top_p if sampling else None,
            top_k=0 if sampling else None,
            num_beams=1,
            repetition_penalty=1.0,
            eos_token_id=self.eos_token_ids or None,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
            return_dict_in_generate=True,
            output_logits=self.token_logprobs,
        )
        criteria = StoppingCriteriaList([StopOnStrings(self.tokenizer, params.stop, width)] if params.stop else [])
        if sampling:
            torch.manual_seed(params.seed if params.seed is not None else 0)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                generation_config=config,
                stopping_criteria=criteria,
            )
        generated = output.sequences[:, width:]
        step_logprobs = (
            torch.log_softmax(torch.stack(output.logits, dim=1).float(), dim=-1) if self.token_logprobs else None
        )
        results: list[tuple[int, Generation]] = []
        for row, (index, prompt_ids, note) in enumerate(batch):
            row_budget = min(params.max_tokens, self.max_model_len - len(prompt_ids))
            row_logprobs = step_logprobs[row] if step_logprobs is not None else None
            results.append((index, self._finish_row(generated[row], row_logprobs, params, row_budget, note)))
        return results

    def _finish_row(self, tokens, logprobs, params: SamplingParams, budget: int, note: str | None) -> Generation:
        ids: list[int] = []
        token_logprobs: list[float] = []
        finish_reason = "length"
        for step, token in enumerate(tokens.tolist()):
            if step >= budget:
                break
            ids.append(token)
            if logprobs is not None:
                token_logprobs.append(float(logprobs[step, token]))
            if token in self.eos_token_ids:
                finish_reason = "stop"
                break
            if params.stop:
                text_so_far = self.tokenizer.decode(ids, skip_special_tokens=True)
                if truncate_at_stop(text_so_far, params.stop)[1]:
                    finish_reason = "stop"
                    break
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, _ = truncate_at_stop(text, params.stop)
        return Generation(
            text=text,
            finish_reason=finish_reason,
            n_tokens=len(ids),
            token_ids=ids,
            token_logprobs=token_logprobs if logprobs is not None else None,
            note=note,
        )

    # ------------------------------------------------------------------ log-likelihood
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[Loglikelihood]:
        results: list[Loglikelihood | None] = [None] * len(requests)
        counter = _Counter(progress)
        ready: list[tuple[int, list[int], int, int]] = []  # index, tokens, n_continuation, n_chars
        for index, request in enumerate(requests):
            try:
                pair: EncodedPair = self.encoder.encode_pair(request.context, request.continuation)
                tokens = truncate_pair(pair, self.max_model_len)
                ready.append((index, tokens, len(pair.continuation_ids), len(request.continuation)))
            except Exception as error:  # noqa: BLE001
                reraise_interrupt(error)
                results[index] = Loglikelihood(error=describe_error(error), n_chars=len(request.continuation))
                counter.add(1)
        ready.sort(key=lambda item: -len(item[1]))
        for start in range(0, len(ready), self.batch_size):
            batch = ready[start : start + self.batch_size]
            for index, scored in self._score_batch(batch):
                results[index] = scored
            counter.add(len(batch))
        return [r if r is not None else Loglikelihood(error="internal: no result") for r in results]

    def _score_batch(self, batch: list[tuple[int, list[int], int, int]]) -> list[tuple[int, Loglikelihood]]:
        try:
            return self._score_batch_unsafe(batch)
        except Exception as error:  # noqa: BLE001
            reraise_interrupt(error)
            if len(batch) == 1:
                return [(batch[0][0], Loglikelihood(error=describe_error(error), n_chars=batch[0][3]))]
            out: list[tuple[int, Loglikelihood]] = []
            for item in batch:
                out.extend(self._score_batch([item]))
            return out

    def _score_batch_unsafe(self, batch: list[tuple[int, list[int], int, int]]) -> list[tuple[int, Loglikelihood]]:
        # Feed everything but the last token; the last `keep` positions predict the continuations.
        rows = [tokens[:-1] for _, tokens, _, _ in batch]
        keep = max(n_cont for _, _, n_cont, _ in batch)
        logprobs = self._forward_tail_logprobs(rows, keep)
        results: list[tuple[int, Loglikelihood]] = []
        for row, (index, tokens, n_cont, n_chars) in enumerate(batch):
            continuation = tokens[-n_cont:]
            predictions = logprobs[row, keep - n_cont :]
            total = 0.0
            greedy = True
            for position, token in enumerate(continuation):
                total += float(predictions[position, token])
                greedy = greedy and int(predictions[position].argmax()) == token
            results.append((index, Loglikelihood(logprob=total, is_greedy=greedy, n_tokens=n_cont, n_chars=n_chars)))
        return results

    # ------------------------------------------------------------------ choices
    def choice_logprobs(
        self, requests: Sequence[ChoiceRequest], progress: ProgressCallback | None = None
    ) -> list[ChoiceScores]:
        results: list[ChoiceScores | None] = [None] * len(requests)
        one_pass: list[tuple[int, list[int], list[int]]] = []
        fallback: list[int] = []
        for index, request in enumerate(requests):
            try:
                single = self.encoder.single_token_choices(request.context, request.choices)
            except Exception as error:  # noqa: BLE001
                reraise_interrupt(error)
                results[index] = ChoiceScores(error=describe_error(error))
                continue
            if single is None:
                fallback.append(index)
            elif len(single[0]) >= self.max_model_len:
                context_ids = single[0][-(self.max_model_len - 1) :]
                one_pass.append((index, context_ids, single[1]))
            else:
                one_pass.append((index, single[0], single[1]))
        counter = _Counter(progress)
        counter.add(sum(r is not None for r in results))
        one_pass.sort(key=lambda item: -len(item[1]))
        for start in range(0, len(one_pass), self.batch_size):
            batch = one_pass[start : start + self.batch_size]
            for index, scores in self._choice_batch(batch):
                results[index] = scores
            counter.add(len(batch))
        if fallback:
            scored = super().choice_logprobs([requests[i] for i in fallback])
            for index, scores in zip(fallback, scored):
                results[index] = scores
            counter.add(len(fallback))
        return [r if r is not None else ChoiceScores(error="internal: no result") for r in results]

    def _choice_batch(self, batch: list[tuple[int, list[int], list[int]]]) -> list[tuple[int, ChoiceScores]]:
        try:
            logprobs = self._forward_tail_logprobs([context for _, context, _ in batch], keep=1)
        except Exception as error:  # noqa: BLE001
            reraise_interrupt(error)
            if len(batch) == 1:
                return [(batch[0][0], ChoiceScores(error=describe_error(error)))]
            out: list[tuple[int, ChoiceScores]] = []
            for item in batch:
                out.extend(self._choice_batch([item]))
            return out
        return [
            (index, ChoiceScores([float(logprobs[row, -1, token]) for token in choice_ids]))
            for row, (index, _, choice_ids) in enumerate(batch)
        ]


class StopOnStrings(StoppingCriteria):
    """Per-row stop: a row is done once its *generated* text (never the prompt) contains a stop
    string, the way vLLM checks stop strings."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_width: int):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_width = prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        # On the inputs' device: generate ORs this with its own per-row flags, made there.
        hits = [any(s in t for s in self.stops) for t in texts]
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)
