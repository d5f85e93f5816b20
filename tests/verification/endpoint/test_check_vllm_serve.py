"""The endpoint check against a real `vllm serve` on loopback.

Same weights behind the endpoint -> no flag; a different model of the same architecture ->
endpoint_mismatch with an MMD p-value below 0.05. The local weights run on the transformers
backend (float32, like the server): no second vLLM engine to start."""

from __future__ import annotations

import pytest

from tests.verification.endpoint.render import render_endpoint
from verification.endpoint.check import check_endpoint

pytestmark = pytest.mark.slow

# Small but well powered: 10 prompts x 8 samples had 96% power against tiny-other at alpha 0.01
# already at T=0.3 (performance/endpoint_power.py); the check now samples at T=0.1, which also
# separates near relatives (performance/zoo_endpoint_rates.py). The prompts are a fresh draw.
SETTINGS = dict(seed=0, n_prompts=10, samples_per_prompt=8, max_tokens=16, greedy_max_tokens=24,
                n_permutations=500, allow_loopback=True)


def test_endpoint_serving_the_submitted_weights_is_not_flagged(served_tiny_base, tiny_base, hf_tiny):
    # Fewer samples suffice here: under the null the test rejects at alpha whatever the size.
    settings = {**SETTINGS, "samples_per_prompt": 5}
    section, flags = check_endpoint(served_tiny_base.url, tiny_base.path, weights_backend=hf_tiny, **settings)
    assert flags == []
    assert section["status"] == "ok" and section["verdict"] == "matches", section.get("verdict_reasons")
    assert section["model"] == "verity-test/tiny-base" and section["model_source"] == "listing"
    assert section["mode"] == "chat"
    assert section["greedy"]["agreement_rate"] == 1.0 and section["greedy"]["n_compared"] == 10
    assert section["mmd"]["p_value"] >= section["mmd"]["alpha"] == 0.01
    assert section["mmd"]["n_endpoint"] == section["mmd"]["n_weights"] == 50
    # The endpoint's own logprobs, teacher-forced through the weights: float32 on both sides.
    assert section["logprobs"]["n_compared"] >= 5
    assert section["logprobs"]["median_drift_per_token"] < 1e-3
    assert section["errors"]["endpoint"]["n_errors"] == 0
    assert len(section["identity"]) == 2 and all(p["endpoint"] is not None for p in section["identity"])
    html = render_endpoint(section)
    assert "consistent with the submitted weights" in html and "10 / 10 prompts identical" in html


def test_endpoint_serving_another_model_is_flagged(served_tiny_base, tiny_other_base, hf_tiny_other):
    section, flags = check_endpoint(
        served_tiny_base.url, tiny_other_base.path, weights_backend=hf_tiny_other,
        endpoint_model="verity-test/tiny-base", **SETTINGS,
    )
    assert section["status"] == "ok" and section["verdict"] == "differs"
    assert section["model_source"] == "claims"
    assert len(flags) == 1
    flag = flags[0]
    assert flag["kind"] == "endpoint_mismatch" and flag["severity"] == "critical" and flag["benchmark"] is None
    assert flag["evidence"]["p_value"] < 0.05
    assert flag["evidence"]["agreement_rate"] < 0.5
    assert flag["evidence"]["examples"] and {"prompt", "endpoint", "weights"} <= set(flag["evidence"]["examples"][0])
    assert "MMD p" in flag["summary"]
    assert section["logprobs"]["median_drift_per_token"] > 0.1
    html = render_endpoint(section)
    assert "does not behave like the submitted weights" in html and "Greedy completions that differ" in html
