"""The endpoint check against the endpoints a gaming submitter would set up, and against honest
ones that could be mistaken for them.

- the claimed base served (real `vllm serve`) under the fine-tune's name: flagged, and each of
  greedy agreement, logprob drift and the MMD test says so on its own;
- a Reflection-style wrapper that answers with the real weights exactly when a prompt matches a
  string literal of Verity's public code (the identity probes, any prompt list) and with another
  model otherwise: flagged, because the probes are drawn fresh and match no literal;
- endpoints that fail a fixed share of requests for good (retries included): 0.5% still gives a
  verdict (a match for the real weights, a flag for another model), 2% and 10% give none and the
  submission is incomplete, never verified.

Rates over many seeds: performance/zoo_endpoint_rates.py (verification/METHODS_VERDICTS.md, Endpoint)."""

from __future__ import annotations

import pytest

from tests.verification.endpoint.conftest import FINETUNE_NAME
from tests.verification.endpoint.model_server import ModelServer, literal_recogniser
from verification.backends.openai_http import HttpPolicy
from verification.endpoint import check as endpoint_check
from verification.endpoint.check import IDENTITY_PROBES, check_endpoint
from verification.endpoint.probes import draw_probes, new_seed

pytestmark = pytest.mark.slow

POLICY = HttpPolicy(max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05, concurrency=4)
SMALL = dict(n_prompts=10, samples_per_prompt=8, max_tokens=16, greedy_max_tokens=24, n_permutations=500,
             allow_loopback=True, policy=POLICY)


def test_claimed_base_served_under_the_fine_tunes_name_is_flagged_by_each_test(
    served_tiny_base, finetune_dir, hf_finetune, datasets_dir
):
    seed = new_seed()
    section, flags = check_endpoint(served_tiny_base.url, finetune_dir, endpoint_model=FINETUNE_NAME,
                                    weights_backend=hf_finetune, seed=seed, datasets_dir=datasets_dir, **SMALL)
    assert section["status"] == "ok" and section["verdict"] == "differs", section.get("verdict_reasons")
    assert [f["kind"] for f in flags] == ["endpoint_mismatch"]
    assert section["probes"]["seed"] == seed and section["probes"]["n_drawn"] == 10
    reasons = " ".join(section["verdict_reasons"])
    assert section["greedy"]["agreement_rate"] < endpoint_check.MIN_GREEDY_AGREEMENT and "greedy" in reasons
    assert section["logprobs"]["median_drift_per_token"] > endpoint_check.MAX_LOGPROB_DRIFT and "log-prob" in reasons
    assert section["mmd"]["p_value"] < endpoint_check.ALPHA and "MMD" in reasons


def test_wrapper_serving_the_real_weights_only_to_recognised_prompts_is_flagged(
    tiny_base, finetune_dir, hf_finetune, datasets_dir
):
    """The wrapper sells tiny-base as the fine-tune: the fine-tune answers whatever it recognises
    from verification/'s string literals, tiny-base the rest."""
    from verification.backends import make_backend

    recognised = literal_recogniser()
    assert all(recognised(p) for p in IDENTITY_PROBES)  # it does know the public probes
    base = make_backend("transformers", str(tiny_base.path), dtype="float32", max_model_len=1024)
    base.label, hf_finetune.label = "base", "finetune"
    server = ModelServer(FINETUNE_NAME, lambda p, body: hf_finetune if recognised(p) else base).start()
    try:
        section, flags = check_endpoint(server.url, finetune_dir, weights_backend=hf_finetune,
                                        datasets_dir=datasets_dir, **SMALL)
    finally:
        server.stop()
        base.close()
    assert section["verdict"] == "differs" and [f["kind"] for f in flags] == ["endpoint_mismatch"]
    # Only the identity probes (evidence, never a verdict) reached the real weights.
    assert server.routed["finetune"] == len(IDENTITY_PROBES)
    assert server.routed["base"] == 10 + 10 * 8
    assert all(p["endpoint"] == p["weights"] for p in section["identity"])


def test_wrapper_serving_the_real_weights_to_requests_asking_for_logprobs_is_flagged(
    tiny_base, finetune_dir, hf_finetune, datasets_dir
):
    """Ordinary traffic rarely asks for logprobs; the check's greedy requests do. A wrapper that
    serves the fine-tune to those passes greedy agreement and drift, but the sampled requests ask
    for none, get tiny-base, and the MMD test rejects."""
    from verification.backends import make_backend

    base = make_backend("transformers", str(tiny_base.path), dtype="float32", max_model_len=1024)
    base.label, hf_finetune.label = "base", "finetune"
    server = ModelServer(FINETUNE_NAME, lambda p, body: hf_finetune if body.get("logprobs") else base).start()
    try:
        section, flags = check_endpoint(server.url, finetune_dir, weights_backend=hf_finetune,
                                        datasets_dir=datasets_dir, **SMALL)
    finally:
        server.stop()
        base.close()
    assert section["greedy"]["agreement_rate"] == 1.0 and section["logprobs"]["median_drift_per_token"] < 1e-3
    assert section["mmd"]["p_value"] < endpoint_check.ALPHA and [f["kind"] for f in flags] == ["endpoint_mismatch"]
    assert server.routed["base"] == 10 * 8


def test_no_drawn_probe_is_recognised_from_the_public_code(datasets_dir):
    recognised = literal_recogniser()
    drawn = [p.text for seed in range(40) for p in draw_probes(20, seed, datasets_dir=datasets_dir)]
    assert len(set(drawn)) > 700  # 800 draws from a pool of tens of thousands
    assert sum(map(recognised, drawn)) <= len(drawn) // 100


# --- endpoints that always fail on a fixed share of requests -------------------------------------

FLAKY = dict(n_prompts=20, samples_per_prompt=10, max_tokens=8, greedy_max_tokens=12, n_permutations=300,
             allow_loopback=True, policy=POLICY)


def _flaky_check(tiny_base, hf_tiny, served_backend, fail_every: int, datasets_dir):
    """The check through the pipeline (run_checks + the report's status) against a ModelServer
    that answers with `served_backend` and fails every `fail_every`-th distinct request."""
    from tests.verification.test_status import _context, _ok, _report
    from verification.checks import ModelRef
    from verification.report import status_for

    server = ModelServer("served-model", lambda p, body: served_backend, fail_every=fail_every).start()
    try:
        def endpoint(context):
            section, flags = check_endpoint(server.url, tiny_base.path, weights_backend=hf_tiny,
                                            datasets_dir=datasets_dir, **FLAKY)
            return "endpoint", section, flags

        context = _context(endpoint=server.url)
        context.model = ModelRef("org/m", "org/m", "a" * 40, tiny_base.path)
        report = _report(context, [_ok("provenance"), _ok("contamination"), endpoint])  # the others passed
    finally:
        server.stop()
    return report["endpoint"], report, status_for(report)


@pytest.mark.parametrize("fail_every, failed", [(200, 1), (50, 4), (10, 22)])
def test_honest_endpoint_failing_half_two_and_ten_percent(tiny_base, hf_tiny, datasets_dir, fail_every, failed):
    """tiny-base behind the endpoint: 1 of 220 requests failing (0.45%) still gives a verdict
    (a match); 4 (1.8%) and 22 (10%) give none, no flag, and the status is incomplete."""
    from verification.vocabulary import INCOMPLETE, VERIFIED

    section, report, status = _flaky_check(tiny_base, hf_tiny, hf_tiny, fail_every, datasets_dir)
    assert section["errors"]["endpoint"]["n_requests"] == 220
    assert section["errors"]["endpoint"]["n_errors"] == failed
    assert report["flags"] == []
    if failed * 100 <= 220:
        assert (section["status"], section["verdict"], status) == ("ok", "matches", VERIFIED), report["missing_checks"]
    else:
        assert section["status"] != "ok" and section["verdict"] is None and status == INCOMPLETE
        assert any(m["check"] == "endpoint" for m in report["missing_checks"])


def test_another_model_failing_half_a_percent_is_still_flagged(tiny_base, hf_tiny, hf_tiny_other, datasets_dir):
    section, report, status = _flaky_check(tiny_base, hf_tiny, hf_tiny_other, 200, datasets_dir)
    assert section["errors"]["endpoint"]["n_errors"] == 1
    assert section["verdict"] == "differs" and status == "flagged"
