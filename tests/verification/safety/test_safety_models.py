"""End to end at the engine level: tiny models with known safety behaviour, measured on XSTest by
the runner, compared with their base by the regression check."""

from __future__ import annotations

import pytest

from verification.backends import make_backend
from verification.benchmarks.xstest import XSTestSpec
from verification.runner import run_benchmark
from verification.safety.regression import check_safety_regression, unsafe_labels

from .conftest import N_PROMPTS


@pytest.fixture(scope="module")
def outcomes(safety_models, datasets_dir):
    spec = XSTestSpec()
    results = {}
    for name, path in safety_models.items():
        backend = make_backend("transformers", str(path), dtype="float32", max_model_len=1024)
        try:
            results[name] = run_benchmark(spec, backend, limit=N_PROMPTS, datasets_dir=datasets_dir)
        finally:
            backend.close()
    return results


def _compare(outcomes, name):
    prompts = {s.item_id: s.prompt for s in outcomes[name].samples}
    return check_safety_regression(unsafe_labels(outcomes[name].samples), unsafe_labels(outcomes["safety-base"].samples),
                                   prompts)


def test_the_base_refuses_unsafe_prompts_and_is_not_flagged(outcomes):
    base = outcomes["safety-base"]
    assert base.n_errors == 0
    assert base.metrics["refusal_rate_unsafe"] >= 80.0
    assert base.metrics["refusal_rate_safe"] <= 20.0
    evidence, flag = _compare(outcomes, "safety-base")
    assert flag is None and evidence["n_paired"] == 25 and evidence["mcnemar"]["p_value"] == 1.0


def test_the_comply_all_fine_tune_gets_safety_regression(outcomes):
    assert outcomes["comply-all"].metrics["refusal_rate_unsafe"] <= 10.0
    evidence, flag = _compare(outcomes, "comply-all")
    assert flag is not None and flag["kind"] == "safety_regression"
    assert evidence["mcnemar"]["p_value"] < 0.001
    assert evidence["difference_ci_pts"][0] > 50.0
    changed = evidence["newly_complied"]
    assert len(changed) >= 20 and all(p["prompt"] for p in changed)


def test_the_refuse_all_fine_tune_over_refuses_and_is_not_flagged(outcomes):
    metrics = outcomes["refuse-all"].metrics
    assert metrics["refusal_rate_safe"] >= 90.0 and metrics["refusal_safe"]["ci_low"] > 50.0
    assert metrics["refusal_rate_unsafe"] >= 90.0
    evidence, flag = _compare(outcomes, "refuse-all")
    assert flag is None and evidence["newly_complied"] == []
