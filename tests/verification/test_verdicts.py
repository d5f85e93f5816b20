"""Verdicts that hold against a gaming submitter and are fair to honest authors: one fixed
family (padding changes nothing), claims judged only under the setup that was run, and the
interval shown agreeing with the test. Property tests run as seeded loops (hypothesis is not a
dependency); near-threshold tests sit on each side of every line."""

from __future__ import annotations

import math
import random

import pytest

from verification import stats
from verification.claims import ClaimSpec, ClaimsDoc, claimable_benchmarks, parse_claims
from verification.compare import Measurement, compare, judge_claim
from verification.vocabulary import (
    CONSISTENT,
    DISCREPANT,
    INCONSISTENT,
    INVALID,
    INVALID_RUN,
    NOT_COMPARABLE,
    SCORE_MISMATCH,
)

STANDARD = {"shots": 0, "cot": False, "chat_template": False}
PROPERTY_CASES = 300


def measured(slug: str, correct: int, n: int, *, errors: int = 0, setup: dict | None = None) -> Measurement:
    """A 0/1-scored measurement of `correct` out of `n` (errored items among the wrong ones)."""
    p_hat = correct / n
    low, high = stats.wilson_interval(correct, n)
    return Measurement(slug, "1", dict(setup or STANDARD), 100 * p_hat, 100 * low, 100 * high, n, errors, 0,
                       math.sqrt(p_hat * (1 - p_hat) / n))


def claim_at_z(m: Measurement, z: float) -> float:
    """The claim (points) whose z against `m` is exactly `z`."""
    p_hat = m.measured / 100
    return 100 * (p_hat + z * stats.difference_se(p_hat, m.se, m.n))


def _random_measurement(rng: random.Random, slug: str, *, valid: bool = True) -> Measurement:
    n = rng.choice([40, 164, 198, 500, 1172, 1319, 14042])
    errors = 0 if valid else rng.randint(int(0.01 * n) + 1, n)
    return measured(slug, rng.randint(0, n - errors), n, errors=errors)


# --- one family -------------------------------------------------------------------------------


def test_padding_never_changes_a_claims_verdict():
    """Property: a claim's verdict, z and flags are the same alone and beside any number of
    other claims (honest, low, over-claimed, on invalid runs)."""
    rng = random.Random(13)
    others = [slug for slug in claimable_benchmarks() if slug != "gsm8k"]
    for _ in range(PROPERTY_CASES):
        gsm8k = _random_measurement(rng, "gsm8k")
        claim = {"benchmark": "gsm8k", "score": round(rng.uniform(0, 100), 1)}
        alone_section, alone_flags = compare({"gsm8k": gsm8k}, parse_claims({"claims": [claim]}))
        padding = rng.sample(others, rng.randint(1, len(others)))
        measurements = {"gsm8k": gsm8k, **{s: _random_measurement(rng, s, valid=rng.random() < 0.8) for s in padding}}
        padded = [claim, *({"benchmark": s, "score": round(rng.uniform(0, 100), 1)} for s in padding)]
        section, flags = compare(measurements, parse_claims({"claims": padded}))
        assert section["gsm8k"] == alone_section["gsm8k"]
        assert [f for f in flags if f["benchmark"] == "gsm8k"] == alone_flags


def test_the_padding_example_stays_inconsistent():
    """GSM8K claimed 74.5, measured 68.2 on all 1319 items (z = 3.46): inconsistent alone and
    beside eight honest low claims."""
    gsm8k = measured("gsm8k", 900, 1319)
    assert round(gsm8k.measured, 1) == 68.2
    others = [slug for slug in claimable_benchmarks() if slug != "gsm8k"][:8]
    measurements = {"gsm8k": gsm8k, **{slug: measured(slug, 300, 500) for slug in others}}
    claims = [{"benchmark": "gsm8k", "score": 74.5}, *({"benchmark": slug, "score": 58.0} for slug in others)]
    section, flags = compare(measurements, parse_claims({"claims": claims}))
    assert section["gsm8k"]["verdict"] == INCONSISTENT and section["gsm8k"]["z"] == pytest.approx(3.46, abs=0.01)
    assert {section[slug]["verdict"] for slug in others} == {CONSISTENT}
    assert [(f["kind"], f["benchmark"]) for f in flags] == [(SCORE_MISMATCH, "gsm8k")]
    assert flags[0]["evidence"]["k_benchmarks"] == 1 and flags[0]["evidence"]["family"] == "per_claim"
    # Counting the submitter's nine claims as the family (the old rule) let it through.
    outcome = (gsm8k.measured / 100, gsm8k.se, gsm8k.n)
    assert stats.verdict(74.5, outcome, k_benchmarks=9)[0] == DISCREPANT


@pytest.mark.parametrize(
    "z, verdict",
    [(1.999, CONSISTENT), (2.001, DISCREPANT), (2.999, DISCREPANT), (3.001, INCONSISTENT),
     (-1.999, CONSISTENT), (-2.001, "claimed_below"), (-30.0, "claimed_below")],
)
def test_claims_just_either_side_of_each_line(z, verdict):
    # p̂ = 0.5, n = 400: 3·SE_d = 10.6 points, so the 2-point minimum gap is not what decides.
    m = measured("gsm8k", 200, 400)
    judgement = judge_claim(claim_at_z(m, z), m)
    assert judgement.verdict == verdict
    assert (judgement.flag is not None) == (verdict == INCONSISTENT)


@pytest.mark.parametrize("gap_pts, verdict", [(1.99, DISCREPANT), (2.0, INCONSISTENT)])
def test_the_two_point_minimum_gap_at_a_huge_n(gap_pts, verdict):
    # n = 100 000 at 90%: z > 3 already at 0.5 points, so only the gap decides.
    m = measured("mmlu", 90_000, 100_000)
    judgement = judge_claim(90.0 + gap_pts, m)
    assert judgement.z > 3 and judgement.verdict == verdict


def test_the_bands_shown_are_the_verdicts_lines():
    """Property: a claim inside the shown consistent band is consistent, one above the shown
    inconsistent line is inconsistent, and a consistent claim outside the 95% interval says why."""
    rng = random.Random(2)
    for _ in range(PROPERTY_CASES):
        m = _random_measurement(rng, "gsm8k")
        entry, _ = compare({"gsm8k": m}, parse_claims({"claims": [{"benchmark": "gsm8k", "score": 50.0}]}))
        bands = entry["gsm8k"]
        claimed = round(rng.uniform(0, 100), 2)
        judgement = judge_claim(claimed, m)
        margin = 1e-3
        if bands["consistent_low"] + margin < claimed < bands["consistent_high"] - margin:
            assert judgement.verdict == CONSISTENT
        elif claimed > bands["inconsistent_above"] + margin:
            assert judgement.verdict == INCONSISTENT
        elif claimed > bands["consistent_high"] + margin:
            assert judgement.verdict == DISCREPANT and "not flagged" in judgement.reason
        if judgement.verdict == CONSISTENT and not m.ci_low <= claimed <= m.ci_high:
            assert judgement.reason and "95% interval" in judgement.reason


# --- judged only on what was reproduced -------------------------------------------------------


SETUP_CHOICES = {"shots": [0, 3, 5, 8, 25], "cot": [False, True], "chat_template": [False, True]}


def test_an_unreproduced_setup_is_never_judged():
    """Property: whatever the numbers, a claim whose stated setup differs from the one measured
    is not_comparable (or invalid, for an invalid run) and raises no score flag."""
    rng = random.Random(5)
    for _ in range(PROPERTY_CASES):
        m = _random_measurement(rng, "arc_challenge", valid=rng.random() < 0.8)
        stated = {key: rng.choice(values) for key, values in SETUP_CHOICES.items() if rng.random() < 0.7}
        if not stated or all(m.setup[key] == value for key, value in stated.items()):
            continue
        claimed = round(rng.uniform(0, 100), 1)
        judgement = judge_claim(claimed, m, claimed_setup=stated)
        assert judgement.verdict == (NOT_COMPARABLE if m.valid else INVALID)
        assert judgement.flag is None or judgement.flag["kind"] == INVALID_RUN


def test_the_unreproduced_arc_claim_is_shown_with_the_setup_that_was_run():
    """ARC 60 claimed at 25 shots, measured 52% 0-shot (z = 3.89 if it were judged)."""
    m = measured("arc_challenge", 52, 100)
    claims = ClaimsDoc(claims=(ClaimSpec("arc_challenge", 60.0, shots=25),))
    section, flags = compare({"arc_challenge": m}, claims)
    entry = section["arc_challenge"]
    assert (entry["verdict"], entry["z"], flags) == (NOT_COMPARABLE, None, [])
    assert entry["setup"] == STANDARD and entry["measured"] == 52.0 and entry["claimed_setup"] == {"shots": 25}
    assert "not run" in entry["verdict_reason"] and "{'shots': 0" in entry["verdict_reason"]
    # The same claim under the setup that was run is judged.
    same = ClaimsDoc(claims=(ClaimSpec("arc_challenge", 60.0, shots=0),))
    assert compare({"arc_challenge": m}, same)[0]["arc_challenge"]["verdict"] != NOT_COMPARABLE


# --- invalid runs -----------------------------------------------------------------------------


def test_an_invalid_run_yields_invalid_run_and_nothing_else():
    """Property: an invalid run, whatever is claimed under whatever setup, raises exactly one
    flag (invalid_run) and feeds no uplift against the base."""
    rng = random.Random(9)
    for _ in range(PROPERTY_CASES):
        m = _random_measurement(rng, "gsm8k", valid=False)
        base = _random_measurement(rng, "gsm8k", valid=rng.random() < 0.5)
        claim: dict = {"benchmark": "gsm8k", "score": round(rng.uniform(0, 100), 1)}
        if rng.random() < 0.5:
            claim["shots"] = rng.choice([0, 5, 8])
        section, flags = compare({"gsm8k": m}, parse_claims({"claims": [claim]}), {"gsm8k": base})
        assert [f["kind"] for f in flags] == [INVALID_RUN]
        assert section["gsm8k"]["verdict"] == INVALID and "uplift" not in section["gsm8k"]
        assert "mcnemar" not in section["gsm8k"] and "no uplift" in section["gsm8k"]["uplift_note"]


def test_an_invalid_base_run_feeds_no_uplift():
    section, _ = compare({"gsm8k": measured("gsm8k", 60, 100)}, parse_claims({"claims": []}),
                         {"gsm8k": measured("gsm8k", 40, 100, errors=5)})
    assert "uplift" not in section["gsm8k"] and "base's run is invalid" in section["gsm8k"]["uplift_note"]


# --- the documented rates ---------------------------------------------------------------------


def test_the_false_flag_simulation_runs_through_the_judge():
    """The simulation behind METHODS_VERDICTS.md: honest claims are rarely flagged, a 6.3-point
    over-claim at GSM8K's n mostly is, and the tables come out for the page (small run here)."""
    from verification import verdict_rates

    honest = verdict_rates.honest_rates(0.682, 1319, trials=3000)
    assert honest.inconsistent < 0.005 and honest.discrepant < 0.05
    assert verdict_rates.overclaim_power(0.682, 1319, 8.0, trials=500) > 0.9
    assert "| 0.682 | 1319 |" in verdict_rates.markdown_tables(trials=50)
