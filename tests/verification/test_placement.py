"""Placement by size (verification/placement.py) on synthetic intake results: no real 70B needed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from verification.config import ImproperlyConfiguredEnv, Pool, env_pools, parse_pools
from verification.intake import IntakeRefused, IntakeResult
from verification.placement import MAX_WEIGHT_SHARE, place, plan_download, serving_bytes

GB = 10**9
POOLS = parse_pools("gpu-small:1:15B,gpu-large:8:80B")


def synthetic(parameters: int, *, shards: int = 1, config_dtype: str = "bfloat16", stored_bytes: int = 2,
              quantized: bool = False) -> IntakeResult:
    """An intake result for a Llama-like repo of `parameters` parameters in `shards` safetensors files."""
    shard_bytes = parameters * stored_bytes // shards
    weights = {f"model-{i + 1:05d}-of-{shards:05d}.safetensors": shard_bytes for i in range(shards)}
    files = {"config.json": 700, "tokenizer.json": 9_000_000, "generation_config.json": 180,
             "model.safetensors.index.json": 60_000, **weights}
    config = {"model_type": "llama", "dtype": config_dtype}
    if quantized:
        config["quantization_config"] = {"quant_method": "fp8"}
    return IntakeResult(
        source="org/model", kind="hub", repo_id="org/model", requested_revision=None, sha="a" * 40,
        local_path=None, files=files, download_files=sorted(files), format="safetensors", dtype="BF16",
        dtypes={"BF16": parameters}, shards=shards, bytes=shard_bytes * shards, parameters=parameters,
        license="apache-2.0", card=True, config=config,
    )


def test_pools_setting_is_parsed_with_units_and_validated():
    assert parse_pools("gpu-small:1:15B, gpu-large:8:80e9:80G") == (
        Pool("gpu-small", 1, 15 * GB), Pool("gpu-large", 8, 80 * GB, 80 * 1024**3))
    assert parse_pools("cpu:1:500M:512MiB") == (Pool("cpu", 1, 500 * 10**6, 512 * 1024**2),)
    assert parse_pools("") == ()
    for bad, message in (("gpu-small:1", "name:gpus:max_parameters"), ("Big Pool:1:7B", "pool name"),
                         ("a:0:7B", "GPUs"), ("a:1.5:7B", "GPUs"), ("a:1:lots", "not a number"),
                         ("a:1:7B,a:2:70B", "listed twice"), ("a:1:7B:-3G", "GPU memory")):
        with pytest.raises(ValueError, match=message):
            parse_pools(bad)


def test_the_pools_reader_names_the_variable(monkeypatch):
    monkeypatch.setenv("VERITY_POOLS", "gpu-small:one:15B")
    with pytest.raises(ImproperlyConfiguredEnv, match="VERITY_POOLS"):
        env_pools("VERITY_POOLS")
    monkeypatch.setenv("VERITY_POOLS", "")
    assert env_pools("VERITY_POOLS") == ()


def test_a_large_model_goes_to_the_large_pool_and_a_small_one_to_the_small_pool():
    small = place(synthetic(7 * GB), POOLS)
    assert small.pool.name == "gpu-small" and small.tensor_parallel_size == 1
    large = place(synthetic(70 * GB, shards=30), POOLS)
    assert large.pool.name == "gpu-large" and large.tensor_parallel_size == 8
    assert large.as_dict()["queue"] == "gpu-large" and large.serving_bytes == 140 * GB
    # The smallest pool that fits, whatever order the operator listed them in.
    assert place(synthetic(7 * GB), tuple(reversed(POOLS))).pool.name == "gpu-small"


def test_a_model_too_large_for_every_pool_is_refused_like_intake_refuses():
    with pytest.raises(IntakeRefused) as refused:
        place(synthetic(405 * GB, shards=191), POOLS)
    assert refused.value.code == "too_large_for_pools"
    assert "405B parameters" in refused.value.reason
    assert "gpu-large (8 GPUs, up to 80B parameters" in refused.value.reason
    with pytest.raises(ValueError, match="no worker pools"):
        place(synthetic(7 * GB), ())


def test_gpu_memory_decides_too_when_given():
    # 70B in bf16 is 140 GB: more than 70% of one 141 GB GPU, within two of them.
    one, two = Pool("h200x1", 1, 100 * GB, 141 * GB), Pool("h200x2", 2, 100 * GB, 141 * GB)
    assert place(synthetic(70 * GB), (one, two)).pool.name == "h200x2"
    assert place(synthetic(30 * GB), (one, two)).pool.name == "h200x1"  # 60 GB <= 0.7 * 141 GB
    with pytest.raises(IntakeRefused, match="140.0 GB in bfloat16"):
        place(synthetic(70 * GB), (one,))
    assert 140 * GB <= 2 * 141 * GB * MAX_WEIGHT_SHARE


def test_serving_size_follows_the_gpu_dtype_rule():
    # float32 checkpoints are served in bf16 on GPU; a float16 model keeps float16; the operator's
    # dtype wins; a quantized checkpoint is served as stored.
    assert serving_bytes(synthetic(GB, config_dtype="float32", stored_bytes=4)) == ("bfloat16", 2 * GB)
    assert serving_bytes(synthetic(GB, config_dtype="float16")) == ("float16", 2 * GB)
    assert serving_bytes(synthetic(GB), dtype="float32") == ("float32", 4 * GB)
    assert serving_bytes(synthetic(GB, stored_bytes=1, quantized=True)) == ("bfloat16", GB)


def test_a_140_gb_model_in_30_shards_is_planned_before_it_starts():
    model = synthetic(70 * GB, shards=30)
    plan = plan_download(model, POOLS, cache_budget_bytes=500 * 1024**3)
    assert plan.placement.pool.name == "gpu-large"
    assert plan.shards == 30 and plan.total_bytes == model.bytes + 9_000_000 + 700 + 180 + 60_000
    names = [name for name, _ in plan.files]
    assert names[:4] == ["config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json"]
    assert names[4:] == sorted(n for n in model.files if n.endswith(".safetensors"))
    assert plan.largest_file_bytes == 140 * GB // 30
    assert plan.as_dict()["placement"]["tensor_parallel_size"] == 8

    with pytest.raises(IntakeRefused) as refused:
        plan_download(model, POOLS, cache_budget_bytes=100 * 1024**3)
    assert refused.value.code == "too_large_for_cache" and "MODEL_CACHE_BYTES" in refused.value.reason
    with pytest.raises(IntakeRefused) as refused:
        plan_download(model, parse_pools("gpu-small:1:15B"), cache_budget_bytes=500 * 1024**3)
    assert refused.value.code == "too_large_for_pools"


def test_without_pools_the_download_is_still_planned_against_the_cache_budget():
    model = synthetic(70 * GB, shards=30)
    plan = plan_download(model, (), cache_budget_bytes=500 * 1024**3)
    assert plan.placement is None and plan.shards == 30 and plan.as_dict()["placement"] is None
    with pytest.raises(IntakeRefused) as refused:
        plan_download(model, (), cache_budget_bytes=100 * 1024**3)
    assert refused.value.code == "too_large_for_cache"
    assert "140.0 GB" in refused.value.reason and "107.4 GB" in refused.value.reason  # the files, the budget
    # Exactly at the budget fits; one byte over does not.
    assert plan_download(model, (), cache_budget_bytes=plan.total_bytes).total_bytes == plan.total_bytes
    with pytest.raises(IntakeRefused):
        plan_download(model, (), cache_budget_bytes=plan.total_bytes - 1)


def test_the_plan_is_part_of_the_intake_record_prepare_returns():
    from verification import pipeline as vp

    model, base = synthetic(70 * GB, shards=30), synthetic(7 * GB, shards=3)
    placement, download = vp.place_model(model, POOLS, 500 * 1024**3)
    base_placement, base_download = vp.place_model(base, POOLS, 500 * 1024**3)
    prep = vp.Preparation(model, base, None, [], placement, base_placement, download, base_download)
    record = prep.intake_record()
    assert record["placement"]["queue"] == "gpu-large" and record["sha"] == model.sha
    assert record["download"]["total_bytes"] == download.total_bytes and record["download"]["shards"] == 30
    assert record["download"]["fits"] == {"cache_budget_bytes": 500 * 1024**3, "pool": "gpu-large"}
    assert len(record["download"]["files"]) == 34
    assert record["base_download"]["shards"] == 3 and record["base_download"]["fits"]["pool"] == "gpu-small"
    # No budget given: placed by size, nothing planned; a local model has nothing to download.
    assert vp.place_model(model, POOLS, None)[1] is None
    local = replace(model, kind="local", repo_id=None, local_path="/models/m")
    assert vp.place_model(local, POOLS, 1)[0].pool.name == "gpu-large"
    assert vp.place_model(local, (), 1) == (None, None)
    assert "download" not in vp.Preparation(local, None, None, []).intake_record()
