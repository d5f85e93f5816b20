"""The transformers backend makes every tensor it hands the model where the model's weights are.

The workers open it on the CPU, but a caller may move `backend.model` to a GPU
(performance/gpu_throughput.py --backend hf does): inputs made on the CPU then fail every call
with "Expected all tensors to be on the same device". The meta device stands in for a GPU here:
the model's forward and generate are replaced by spies that record where their tensors are and
stop the call (a meta model computes no values)."""

from __future__ import annotations

import pytest
import torch

from verification.backends import make_backend
from verification.records import SamplingParams


class Recorded(Exception):
    """Raised by a spy once it has seen its arguments."""


def tensor_devices(kwargs: dict) -> dict[str, str]:
    return {name: value.device.type for name, value in kwargs.items() if isinstance(value, torch.Tensor)}


@pytest.fixture()
def hf_on_meta(tiny_base):
    backend = make_backend("transformers", str(tiny_base.path), dtype="float32", max_model_len=256)
    backend.model.to("meta")
    yield backend
    backend.close()


def test_scoring_inputs_are_made_on_the_models_device(hf_on_meta):
    seen: list[dict[str, str]] = []

    def forward(*args, **kwargs):
        seen.append(tensor_devices(kwargs))
        raise Recorded

    hf_on_meta.model.forward = forward
    with pytest.raises(Recorded):
        hf_on_meta._forward_tail_logprobs([[5, 6, 7], [8, 9]], keep=1)
    assert seen == [{"input_ids": "meta", "attention_mask": "meta", "position_ids": "meta"}]
    assert hf_on_meta.describe()["device"] == "meta"
    hf_on_meta.close()  # a run record is written after the engine is closed too
    assert hf_on_meta.describe()["device"] == "meta"


def test_generation_inputs_are_made_on_the_models_device(hf_on_meta):
    seen: list[dict[str, str]] = []

    def generate(*args, **kwargs):
        seen.append(tensor_devices(kwargs))
        raise Recorded

    hf_on_meta.model.generate = generate
    params = SamplingParams(temperature=0.0, max_tokens=4, stop=("Question:",))
    with pytest.raises(Recorded):
        hf_on_meta._generate_batch_unsafe(params, [(0, [5, 6, 7], None), (1, [8, 9], None)])
    assert seen == [{"input_ids": "meta", "attention_mask": "meta"}]

