"""The one judge of a claim (verification.compare.judge_claim) and its fixed, per-claim family."""

from __future__ import annotations

import pytest

from verification.compare import Measurement, claims_family_size, judge_claim
from verification.vocabulary import MAX_ERROR_RATE


def _measurement(measured: float, n: int = 200, n_errors: int = 0, se: float = 0.0) -> Measurement:
    return Measurement("gsm8k", "1", {}, measured, max(0.0, measured - 5), min(100.0, measured + 5), n, n_errors, 0, se)


def test_an_invalid_run_is_judged_by_nothing_whatever_the_claim():
    errors = int(MAX_ERROR_RATE * 200) + 1
    for claimed in (None, 10.0, 99.0):
        judgement = judge_claim(claimed, _measurement(40.0, n_errors=errors), k=1)
        assert (judgement.verdict, judgement.z, judgement.flag["kind"]) == ("invalid", None, "invalid_run")
    # At the limit the run still counts.
    assert judge_claim(40.0, _measurement(40.0, n_errors=int(MAX_ERROR_RATE * 200)), k=1).verdict == "consistent"


def test_only_an_inconsistent_claim_raises_score_mismatch():
    assert judge_claim(None, _measurement(40.0), k=1) == judge_claim(None, _measurement(40.0))
    assert judge_claim(None, _measurement(40.0), k=1).verdict == "unclaimed"
    inconsistent = judge_claim(70.0, _measurement(40.0), k=1)
    assert inconsistent.verdict == "inconsistent" and inconsistent.flag["kind"] == "score_mismatch"
    assert inconsistent.flag["evidence"]["k_benchmarks"] == 1 and inconsistent.z == round(inconsistent.z, 4)
    discrepant = judge_claim(72.0, _measurement(60.0, se=0.0346), k=1)
    assert discrepant.verdict == "discrepant" and discrepant.flag is None
    below = judge_claim(30.0, _measurement(60.0), k=1)
    assert below.verdict == "claimed_below" and below.flag is None and below.z < -2


def test_the_family_is_fixed_by_the_platform_not_by_the_claims():
    """Each claim is its own family: k = 1 whatever the submitter claims or which runs are valid,
    and a caller cannot choose another k."""
    measurements = {
        "gsm8k": _measurement(40.0),
        "mmlu": _measurement(40.0, n_errors=50),
        "arc_challenge": _measurement(40.0),
    }
    assert claims_family_size(["gsm8k", "mmlu", "ifeval"], measurements) == 1
    assert claims_family_size(["gsm8k", "arc_challenge", "gsm8k"], measurements) == 1
    assert claims_family_size() == 1
    with pytest.raises(ValueError, match="fixed"):
        judge_claim(50.0, _measurement(40.0), k=3)
