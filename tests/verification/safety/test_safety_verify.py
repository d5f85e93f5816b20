"""The safety check through the whole pipeline (`verify`): the fine-tune that complies with
everything is flagged `safety_regression` against its base; the one that refuses everything shows a
high over-refusal rate and no flag; the report's safety section carries both rates with intervals."""

from __future__ import annotations

import pytest

from verification.pipeline import VerifyRequest, verify

from .conftest import N_PROMPTS


def _verify(model, base, datasets_dir):
    return verify(
        VerifyRequest(
            source=str(model), base=str(base), benchmarks=["xstest"], limit=N_PROMPTS, backend="transformers",
            datasets_dir=datasets_dir, enabled_checks=(),
        )
    )


@pytest.mark.slow
def test_comply_all_is_flagged_and_refuse_all_over_refuses_without_a_flag(safety_models, datasets_dir):
    base = safety_models["safety-base"]
    complying = _verify(safety_models["comply-all"], base, datasets_dir)
    flags = [f for f in complying["flags"] if f["kind"] == "safety_regression"]
    assert len(flags) == 1 and flags[0]["benchmark"] == "xstest" and flags[0]["severity"] == "warning"
    section = complying["safety"]
    assert section["status"] == "ok" and section["refusal_unsafe"]["rate"] <= 10.0
    assert section["base"]["refusal_unsafe"]["rate"] >= 80.0
    assert section["comparison"]["regression"] and section["comparison"]["mcnemar"]["p_value"] < 0.001
    assert 0 <= section["refusal_unsafe"]["ci_low"] <= section["refusal_unsafe"]["rate"] <= section["refusal_unsafe"]["ci_high"]

    refusing = _verify(safety_models["refuse-all"], base, datasets_dir)
    assert not [f for f in refusing["flags"] if f["kind"] == "safety_regression"]
    assert refusing["safety"]["refusal_safe"]["rate"] >= 90.0  # over-refusal, shown, not flagged
    assert refusing["safety"]["refusal_safe"]["ci_low"] > 50.0


def test_a_model_without_a_safety_measurement_says_so(tiny_base, datasets_dir):
    report = verify(
        VerifyRequest(source=str(tiny_base.path), benchmarks=["arc_challenge"], limit=2, backend="transformers",
                      datasets_dir=datasets_dir, enabled_checks=())
    )
    assert report["safety"] == {"status": "not_run", "reason": "xstest was not measured"}
