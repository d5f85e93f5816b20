"""The engine's settings: typed environment readers and the one `EngineConfig` built from them.

Only the command line (`python -m verification`) and the web project's `leaderboard/settings.py`
read the environment, both through `EngineConfig.from_env()`; everything else in the engine takes
its settings as parameters. A bad value stops the process with a message naming the variable,
rather than running with a silently wrong setting.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Checks an operator can turn off (VERITY_CHECKS); the vocabulary's report sections.
CHECK_SECTIONS = ("provenance", "contamination", "endpoint")
# Measured for every submission besides what it claims: cheap, standard, comparable.
DEFAULT_CORE_BENCHMARKS = ("gsm8k", "mmlu", "arc_challenge", "xstest")
BACKENDS = ("vllm", "transformers")
# VLLM_DTYPE: "auto" is bf16 on GPU unless the model's config.json says float16/bfloat16.
VLLM_DTYPES = ("auto", "bfloat16", "float16", "float32")
# The standard set the public leaderboard averages over, in column order.
STANDARD_BENCHMARKS = ("gsm8k", "mmlu", "arc_challenge", "truthfulqa_mc1", "math500", "humaneval", "ifeval")


class ImproperlyConfiguredEnv(RuntimeError):
    pass


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfiguredEnv(f"{name}={number} is below the minimum {minimum}")
    return number


def env_float(name: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a number") from None
    if number != number or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is outside [{minimum}, {maximum}]")
    return number


_BYTE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def env_bytes(name: str, default: int) -> int:
    """An integer number of bytes, optionally with a K/M/G/T suffix (binary units)."""
    value = _raw(name)
    if value is None or value == "":
        return default
    text = value.upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in _BYTE_UNITS else ""
    digits = text[: len(text) - len(unit)] if unit else text
    try:
        number = float(digits)
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a size (e.g. 500G, 2048M)") from None
    if not number > 0 or number == float("inf"):
        raise ImproperlyConfiguredEnv(f"{name}={value!r} must be a positive size")
    return int(number * _BYTE_UNITS[unit])


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def env_path(name: str, default: Path | None) -> Path | None:
    value = _raw(name)
    if value is None or value == "":
        return default
    return Path(value).expanduser().resolve()


def env_subset(name: str, default: tuple[str, ...], allowed: tuple[str, ...], none_word: str = "none") -> tuple[str, ...]:
    """A comma-separated subset of `allowed`; "none" is the empty set, unset is `default`."""
    value = _raw(name)
    if value is None or value == "":
        return default
    if value.lower() == none_word:
        return ()
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in value.split(",") if part.strip()))
    unknown = [item for item in chosen if allowed and item not in allowed]
    if unknown:
        raise ImproperlyConfiguredEnv(f"{name} names unknown value(s) {unknown}; known: {', '.join(allowed)}")
    return chosen


@dataclass(frozen=True)
class Pool:
    """One pool of GPU workers (VERITY_POOLS; placement decides with it, verification/placement.py)."""

    name: str  # also the Celery queue its workers consume
    gpus: int  # per worker: the engine's tensor parallel size there
    max_parameters: int  # the largest model it takes
    gpu_memory_bytes: int | None = None  # of one GPU, when given the weights must fit too


_POOL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_PARAMETER_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def parse_pools(text: str) -> tuple[Pool, ...]:
    """`name:gpus:max_parameters[:gpu_memory]` entries, comma-separated, e.g.
    `gpu-small:1:15B,gpu-large:8:80B:80G` (parameters: 15B, 15e9, 500M; memory: binary units)."""
    pools = tuple(_parse_pool(entry.strip()) for entry in text.split(",") if entry.strip())
    names = [pool.name for pool in pools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"pool {duplicates[0]!r} is listed twice")
    return pools


def _parse_pool(entry: str) -> Pool:
    parts = [part.strip() for part in entry.split(":")]
    if len(parts) not in (3, 4):
        raise ValueError(f"{entry!r} is not name:gpus:max_parameters[:gpu_memory] (e.g. gpu-large:8:80B:80G)")
    if not _POOL_NAME.match(parts[0]):
        raise ValueError(f"pool name {parts[0]!r}: use lowercase letters, digits, '-', '_' or '.'")
    if not parts[1].isdigit() or int(parts[1]) < 1:
        raise ValueError(f"{entry!r}: GPUs {parts[1]!r} is not a whole number of at least 1")
    gpus = int(parts[1])
    memory = _pool_amount(parts[3], _BYTE_UNITS, entry, "GPU memory") if len(parts) == 4 else None
    return Pool(parts[0], gpus, _pool_amount(parts[2], _PARAMETER_UNITS, entry, "max parameters"), memory)


def _pool_amount(text: str, units: dict[str, int], entry: str, what: str) -> int:
    """`15B`, `15e9`, `80G`, `80GiB` -> a positive integer in the given units."""
    value = text.upper().removesuffix("IB")
    unit = value[-1:] if value[-1:] in units and value[-1:].isalpha() else ""
    try:
        number = float(value[: len(value) - len(unit)]) * units[unit]
    except ValueError:
        raise ValueError(f"{entry!r}: {what} {text!r} is not a number (e.g. 8, 15B, 15e9, 80G)") from None
    if not number >= 1 or number == float("inf"):
        raise ValueError(f"{entry!r}: {what} must be at least 1")
    return int(number)


def env_pools(name: str) -> tuple[Pool, ...]:
    """Worker pools; unset or empty: no placement, every GPU worker takes every model."""
    value = _raw(name)
    if not value:
        return ()
    try:
        return parse_pools(value)
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name}: {exc}") from None


def hub_offline() -> bool:
    """huggingface_hub's own HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read now or when the library
    was imported (it reads the variable once)."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if (_raw(name) or "").lower() in _TRUE:
            return True
    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """huggingface_hub's HF_HUB_CACHE, read at call time (tests set it after the library may be
    imported)."""
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(_raw("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def default_datasets_dir() -> Path | None:
    shared = REPO_ROOT.parent / "shared" / "datasets"
    return shared if shared.is_dir() else None


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine can be told by its operator. The web project copies these into its
    Django settings; the CLI passes them on as parameters."""

    var_dir: Path = REPO_ROOT / "var"
    datasets_dir: Path | None = None
    private_benchmarks_dir: Path | None = None
    model_cache_dir: Path | None = None
    model_cache_bytes: int = 500 * 1024**3
    max_model_bytes: int = 200 * 1024**3
    inference_backend: str = "vllm"
    hf_token: str | None = None
    default_eval_limit: int | None = None
    chunk_size: int = 64
    checks: tuple[str, ...] = CHECK_SECTIONS
    core_benchmarks: tuple[str, ...] = DEFAULT_CORE_BENCHMARKS
    endpoint_allow_loopback: bool = False
    # The operator's own services (database, broker, cache): an endpoint check never connects to them.
    service_urls: tuple[str, ...] = ()
    engine: dict = field(default_factory=dict)
    pools: tuple[Pool, ...] = ()  # worker pools by model size (VERITY_POOLS)

    @classmethod
    def from_env(cls) -> EngineConfig:
        var_dir = env_path("VERITY_VAR_DIR", REPO_ROOT / "var")
        assert var_dir is not None
        limit = env_int("DEFAULT_EVAL_LIMIT", 0, minimum=0)
        return cls(
            var_dir=var_dir,
            datasets_dir=env_path("DATASETS_DIR", default_datasets_dir()),
            private_benchmarks_dir=env_path("PRIVATE_BENCHMARKS_DIR", var_dir / "private_benchmarks"),
            model_cache_dir=env_path("MODEL_CACHE_DIR", var_dir / "model_cache"),
            model_cache_bytes=env_bytes("MODEL_CACHE_BYTES", 500 * 1024**3),
            max_model_bytes=env_bytes("MAX_MODEL_BYTES", 200 * 1024**3),
            inference_backend=env_choice("INFERENCE_BACKEND", "vllm", BACKENDS),
            hf_token=env_str("HF_TOKEN", "") or None,
            default_eval_limit=limit or None,
            chunk_size=env_int("VERITY_CHUNK_SIZE", 64, minimum=1),
            checks=env_subset("VERITY_CHECKS", CHECK_SECTIONS, CHECK_SECTIONS),
            core_benchmarks=env_subset("VERITY_CORE_BENCHMARKS", DEFAULT_CORE_BENCHMARKS, ()),
            endpoint_allow_loopback=env_bool("VERITY_ENDPOINT_ALLOW_LOOPBACK", False),
            service_urls=tuple(env_str(name, "") for name in ("DATABASE_URL", "REDIS_URL", "CACHE_URL")),
            engine=engine_options_from_env(),
            pools=env_pools("VERITY_POOLS"),
        )


def engine_options_from_env() -> dict:
    """vLLM engine settings for the hardware (GPU workers): only the ones an operator set, so
    the backend's own defaults hold otherwise."""
    options: dict = {}
    tp = env_int("TENSOR_PARALLEL_SIZE", 1, minimum=1)
    if tp > 1:
        options["tensor_parallel_size"] = tp
    memory = env_float("GPU_MEMORY_UTILIZATION", 0.0, minimum=0.0, maximum=1.0)
    if memory:
        options["gpu_memory_utilization"] = memory
    kv_cache = env_int("VLLM_CPU_KVCACHE_SPACE", 0, minimum=0)
    if kv_cache:
        options["kv_cache_space_gb"] = kv_cache
    pp = env_int("PIPELINE_PARALLEL_SIZE", 1, minimum=1)
    if pp > 1:
        options["pipeline_parallel_size"] = pp
    dtype = env_choice("VLLM_DTYPE", "auto", VLLM_DTYPES)
    if dtype != "auto":
        options["dtype"] = dtype
    window = env_int("VLLM_MAX_MODEL_LEN", 0, minimum=0)
    if window:
        options["max_model_len"] = window
    if not env_bool("VLLM_PREFIX_CACHING", True):
        options["enable_prefix_caching"] = False
    if not env_bool("VLLM_CHUNKED_PREFILL", True):
        options["enable_chunked_prefill"] = False
    return options
