"""Provenance at 70B scale, in miniature: the check streams both models tensor by tensor, so its
peak memory is a few tensors, never the models. Runs the whole check (distances, LoRA signature,
added tokens) on a ~300 MB synthetic model and its base in a fresh process and bounds its peak
RSS above the interpreter's baseline (performance/provenance_memory.py sweeps the sizes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
MIB = 2**20
# Allocator slack on top of the tensors: glibc keeps freed blocks, torch's pools differ by version.
SLACK_BYTES = 64 * MIB


def bench_module():
    path = REPO_ROOT / "performance" / "provenance_memory.py"
    spec = importlib.util.spec_from_file_location("provenance_memory", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_streamed_check_stays_within_a_few_tensors_of_memory(tmp_path):
    bench = bench_module()
    shape = bench.Shape(layers=9)  # bf16: 296 MB per model, 592 MB as float32
    assert 280e6 < shape.model_bytes() < 320e6
    base, lora = bench.build_pair(tmp_path, shape)
    figures = bench.measure_in_subprocess(lora, base, threads=1, timeout=300)

    assert figures["verdict"] == "matches_claimed" and figures["lora"] == "low_rank"
    largest = shape.largest_tensor_f32_bytes()
    bound = 3 * largest + SLACK_BYTES
    one_model_f32 = 2 * shape.model_bytes()  # as the check reads it; the two models are twice that
    assert bound < one_model_f32 / 2  # the bound holds less than half of one model
    above = figures["peak_above_baseline_mib"] * MIB
    assert above <= bound, (
        f"peak {figures['peak_above_baseline_mib']} MiB above the baseline, bound {bound / MIB:.0f} MiB "
        f"(3 x the largest tensor {largest / MIB:.1f} MiB + {SLACK_BYTES / MIB:.0f} MiB); figures {figures}"
    )
