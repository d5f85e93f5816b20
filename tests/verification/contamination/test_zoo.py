"""The contamination zoo: test-set leakage is flagged, training on the train split is not, with and
without a claimed base; and the demo's tiny-inflated (GSM8K train text only) gets no warning.

Rates over several seeds: performance/zoo_contamination_rates.py."""

from __future__ import annotations

import pytest

from tests.verification.contamination.conftest import MEMORIZED, PROBE_SEED, REFERENCE_SIZE

EXPECTED_FLAGGED = {"train-only": False, "leak": True, "test-only": True}


def _contamination_flags(flags):
    return [f for f in flags if f["kind"] == "contamination"]


@pytest.mark.parametrize("with_base", [True, False], ids=["base", "no-base"])
@pytest.mark.parametrize("name", sorted(EXPECTED_FLAGGED))
def test_zoo_outcome(contamination_results, name, with_base):
    section, flags = contamination_results[(name, with_base)]
    assert section["status"] == "ok" and not section["errors"] and section["base_compared"] == with_base
    flagged = _contamination_flags(flags)
    assert bool(flagged) == EXPECTED_FLAGGED[name], section["summary"]
    assert section["flagged"] == EXPECTED_FLAGGED[name]
    if flagged:
        [flag] = flagged
        assert flag["benchmark"] == "gsm8k" and len(flag["evidence"]["methods"]) >= 2
        # Only methods that compare same-distribution sets (or the base) may agree.
        assert set(flag["evidence"]["methods"]) <= {"completion", "min_k_pp", "skywork", "heldout_gap"}


@pytest.mark.parametrize("with_base", [True, False], ids=["base", "no-base"])
def test_train_split_training_moves_delta1_but_not_the_decisive_comparisons(contamination_results, with_base):
    """The honest look-alike: GSM8K-style training can make GSM8K text cheaper than Skywork's
    reference set (the old Δ1 rule's signal) — that must not count; the same-distribution
    comparisons stay on the honest side."""
    section, _ = contamination_results[("train-only", with_base)]
    sky = section["methods"]["skywork"]
    decisive = sky["excess"] or sky["model"]
    # Δ2 of an honest model is zero up to the noise of 40 test texts; it stays within it.
    assert not sky["fired"] and decisive["delta2"] > -2.33 * decisive["delta2_se"], sky
    assert not section["methods"]["min_k_pp"]["fired"]
    assert section["thresholds"]["skywork"]["delta1_decides"] is False
    assert "delta1" in sky["model"] and "skywork" not in section["fired"]  # Δ1 shown, never counted


@pytest.mark.parametrize("with_base", [True, False], ids=["base", "no-base"])
def test_leak_makes_test_items_cheaper_than_train_items(contamination_results, with_base):
    section, _ = contamination_results[("leak", with_base)]
    sky = section["methods"]["skywork"]
    decisive = sky["excess"] or sky["model"]
    assert decisive["delta2"] < -0.01 and sky["fired"] and sky["unit"] == "nats per byte"
    minkpp = section["methods"]["min_k_pp"]
    assert minkpp["fired"] and minkpp["controls"] == "gsm8k train"
    assert (minkpp["delta"] or minkpp["model"])["auc"] >= 0.65


def test_small_leak_near_the_detection_limit(contamination_results):
    """A tenth of the probed items leaked (4 of 40) among 160 train items: below what the
    item-level rank test can see at n = 40; it is reported, and the numbers are shown, but the
    combined rule does not flag it. (Detection rate by leak size: the rates script.)"""
    for with_base in (True, False):
        section, flags = contamination_results[("leak-small", with_base)]
        assert section["status"] == "ok"
        assert section["methods"]["skywork"]["model"]["n_test"] == MEMORIZED
        assert not _contamination_flags(flags), section["summary"]


def test_completion_without_a_train_split_or_base_does_not_count():
    """ARC has no train split here: with no base there is no control that separates a leak from
    in-domain training, so a completion hit rate alone never counts towards agreement."""
    from verification.contamination.check import _fired_by_benchmark, completion_evidence
    from verification.contamination.items import ProbeItem
    from verification.contamination.probes import Completion

    items = [ProbeItem(i, str(i), f"question {i}") for i in range(20)]
    hits = [Completion("a", "b", "b", True, 1.0)] * 10 + [Completion("a", "b", "c", False, 0.0)] * 10
    alone = completion_evidence("arc_challenge", items, hits, None)
    assert not alone["counts"] and not alone["fired"]
    misses = [Completion("a", "b", "c", False, 0.0)] * 20
    with_base = completion_evidence("arc_challenge", items, hits, misses)
    assert with_base["counts"] and with_base["fired"]
    methods = {"completion": {"by_benchmark": {"arc_challenge": alone}}}
    assert _fired_by_benchmark(methods) == {}


def test_completion_on_gsm8k_needs_test_beyond_train():
    """A model that completes train items as often as test items (in-domain memorisation of the
    train split) does not fire; test items alone reproduced does."""
    from verification.contamination.check import completion_evidence
    from verification.contamination.items import ProbeItem
    from verification.contamination.probes import Completion

    hit, miss = Completion("a", "b", "b", True, 1.0), Completion("a", "b", "c", False, 0.0)
    items = [ProbeItem(i, str(i), f"q {i}") for i in range(40)]
    test = [hit] * 12 + [miss] * 28
    same_on_train = completion_evidence("gsm8k", items, test, None, [hit] * 12 + [miss] * 28)
    assert same_on_train["counts"] and not same_on_train["fired"]
    beyond_train = completion_evidence("gsm8k", items, test, None, [hit] * 1 + [miss] * 39)
    assert beyond_train["fired"] and beyond_train["against_train"]["p_value"] < 0.01
    # With a base: the gain over the base must be larger on test items than on train items.
    base_test = [miss] * 40
    gain_everywhere = completion_evidence("gsm8k", items, test, base_test, [hit] * 12 + [miss] * 28, [miss] * 40)
    assert not gain_everywhere["fired"]
    gain_on_test = completion_evidence("gsm8k", items, test, base_test, [miss] * 40, [miss] * 40)
    assert gain_on_test["fired"]


def test_train_controls_follow_the_probe_settings(contamination_results):
    section, _ = contamination_results[("train-only", True)]
    assert section["seed"] == PROBE_SEED
    assert section["methods"]["skywork"]["model"]["n_train"] == REFERENCE_SIZE
    assert section["methods"]["min_k_pp"]["model"]["n_controls"] == MEMORIZED
