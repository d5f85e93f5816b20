"""Placement by size: which worker pool measures a model, and whether its download can start.

A fleet has pools of GPU hosts (docs/scaling.md), each its own Celery queue, configured as
``VERITY_POOLS="gpu-small:1:15B,gpu-large:8:80B:80G"`` (read into `config.Pool`s): per pool its
name (the queue its workers consume), GPUs per worker (the engine's tensor parallel size there),
the largest model it takes in parameters (``15B``, ``15e9``, ``500M``) and, optionally, the
memory of one GPU (``80G``, binary units). With the memory given, the model's weights in the
dtype a GPU serves them in must also fit in MAX_WEIGHT_SHARE of the pool's GPU memory, the rest
being the KV cache's.

`place(model, pools)` picks the smallest pool that takes the model (a 7B model never holds an
8-GPU host) and refuses, as intake does, a model too large for every pool. `plan_download(...)`
plans the fetch before any byte moves: the files in order, the total against the model cache's
disk budget, and the pool; a model that does not fit is refused up front instead of failing
after hours of downloading. Both take intake's result only (no download, no Hub call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from verification.backends.vllm_backend import DTYPE_BYTES, config_dtype, serving_dtype
from verification.config import Pool
from verification.intake import IntakeRefused, IntakeResult

# Share of a pool's GPU memory the weights may take *(ours)*: vLLM takes 0.85 of each GPU by
# default, and a batch of 2-4k-token prompts needs a fifth of that or more for its KV cache.
MAX_WEIGHT_SHARE = 0.7


@dataclass(frozen=True)
class Placement:
    pool: Pool
    parameters: int
    serving_dtype: str
    serving_bytes: int  # the weights in GPU memory

    @property
    def tensor_parallel_size(self) -> int:
        return self.pool.gpus

    def as_dict(self) -> dict[str, Any]:
        return {"pool": asdict(self.pool), "queue": self.pool.name, "parameters": self.parameters,
                "serving_dtype": self.serving_dtype, "serving_bytes": self.serving_bytes,
                "tensor_parallel_size": self.tensor_parallel_size}


@dataclass(frozen=True)
class DownloadPlan:
    placement: Placement | None  # None without worker pools (every GPU worker takes every model)
    files: tuple[tuple[str, int], ...]  # (name, bytes) in download order
    total_bytes: int
    shards: int
    largest_file_bytes: int
    cache_budget_bytes: int

    def as_dict(self) -> dict[str, Any]:
        placement = self.placement.as_dict() if self.placement is not None else None
        return {"placement": placement, "files": [list(f) for f in self.files],
                "total_bytes": self.total_bytes, "shards": self.shards,
                "largest_file_bytes": self.largest_file_bytes, "cache_budget_bytes": self.cache_budget_bytes}



def serving_bytes(model: IntakeResult, dtype: str = "auto") -> tuple[str, int]:
    """(dtype, bytes) of the weights in GPU memory: the parameters in the dtype a GPU worker serves
    them in; a quantized checkpoint is served as stored."""
    chosen = serving_dtype(dtype, config_dtype(model.config))
    if "quantization_config" in model.config or chosen not in DTYPE_BYTES:
        return chosen, model.bytes
    return chosen, model.parameters * DTYPE_BYTES[chosen]


def weight_budget(pool: Pool) -> int | None:
    """Bytes of weights the pool's GPUs hold (None when its GPU memory is not configured)."""
    if pool.gpu_memory_bytes is None:
        return None
    return int(pool.gpus * pool.gpu_memory_bytes * MAX_WEIGHT_SHARE)


def fits(pool: Pool, parameters: int, weight_bytes: int) -> bool:
    budget = weight_budget(pool)
    return parameters <= pool.max_parameters and (budget is None or weight_bytes <= budget)


def describe_pool(pool: Pool) -> str:
    memory = f", {_gigabytes(pool.gpu_memory_bytes)} per GPU" if pool.gpu_memory_bytes else ""
    gpus = f"{pool.gpus} GPU{'s' if pool.gpus > 1 else ''}"
    return f"{pool.name} ({gpus}, up to {_count(pool.max_parameters)} parameters{memory})"


def place(model: IntakeResult, pools: Sequence[Pool], *, dtype: str = "auto") -> Placement:
    """The smallest pool (fewest GPUs, then lowest size limit) that takes the model. Raises
    IntakeRefused("too_large_for_pools") when none does, ValueError when no pool is configured."""
    if not pools:
        raise ValueError("no worker pools configured (VERITY_POOLS)")
    chosen_dtype, weight_bytes = serving_bytes(model, dtype)
    fitting = [pool for pool in pools if fits(pool, model.parameters, weight_bytes)]
    if not fitting:
        largest = max(pools, key=lambda p: (p.max_parameters, weight_budget(p) or 0))
        raise IntakeRefused(
            "too_large_for_pools",
            f"the model has {_count(model.parameters)} parameters ({_gigabytes(weight_bytes)} in {chosen_dtype}); "
            f"the largest worker pool here, {describe_pool(largest)}, cannot hold it",
        )
    pool = min(fitting, key=lambda p: (p.gpus, p.max_parameters, p.name))
    return Placement(pool, model.parameters, chosen_dtype, weight_bytes)


def plan_download(
    model: IntakeResult, pools: Sequence[Pool], cache_budget_bytes: int, *, dtype: str = "auto"
) -> DownloadPlan:
    """The fetch of a hub model, planned from intake before it starts. Raises IntakeRefused when
    the files exceed the model cache's disk budget (MODEL_CACHE_BYTES) or no pool takes the model;
    without pools the plan has no placement and only the budget decides."""
    placement = place(model, pools, dtype=dtype) if pools else None
    sizes = {name: int(model.files.get(name, 0)) for name in model.download_files}
    total = sum(sizes.values())
    if total > cache_budget_bytes:
        raise IntakeRefused(
            "too_large_for_cache",
            f"the model's files are {_gigabytes(total)}, more than this instance's model cache can hold "
            f"({_gigabytes(cache_budget_bytes)}, MODEL_CACHE_BYTES)",
        )
    # Metadata first (a broken config fails in seconds), then the shards in their own order.
    order = sorted(sizes, key=lambda name: (name.endswith(".safetensors"), name))
    shards = [name for name in order if name.endswith(".safetensors")]
    return DownloadPlan(
        placement=placement,
        files=tuple((name, sizes[name]) for name in order),
        total_bytes=total,
        shards=len(shards),
        largest_file_bytes=max(sizes.values(), default=0),
        cache_budget_bytes=int(cache_budget_bytes),
    )


def _count(parameters: int) -> str:
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if parameters >= size:
            return f"{parameters / size:.3g}{unit}"
    return str(parameters)


def _gigabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB"
