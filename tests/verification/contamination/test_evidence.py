"""Statistics and decision rules of the contamination section, on known numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from verification.contamination import stats
from verification.contamination.check import _flags, _fired_by_benchmark, heldout_evidence
from verification.contamination.plot import public_vs_heldout_plot
from verification.contamination.probes import min_k_pp_score, normalise, rouge_l_f1
from verification.contamination.lm import TokenStats


def test_two_proportion_se_matches_formula():
    a, b = stats.Proportion(80, 100), stats.Proportion(60, 200)
    assert stats.two_proportion_se(a, b) == pytest.approx(math.sqrt(0.8 * 0.2 / 100 + 0.3 * 0.7 / 200))


def test_outcomes_accept_scores_counts_and_points():
    assert stats.as_proportion([1, 0, 1, 1]).p == 0.75
    assert stats.as_proportion({"n": 50, "correct": 10}).p == 0.2
    assert stats.as_proportion({"n": 50, "measured": 40.0}).p == pytest.approx(0.4)
    assert stats.as_proportion(None) is None
    with pytest.raises(ValueError):
        stats.as_proportion({"n": 3})


def test_overfit_model_has_gap_beyond_its_base():
    """GSM1k-like numbers: the fine-tune gains 20 points on GSM8K but none on fresh problems,
    while its base shows only the difficulty gap every model has."""
    public = {"gsm8k": {"model": {"n": 400, "correct": 280}, "base": {"n": 400, "correct": 200}}}
    heldout = {"gsm_fresh": {"model": {"n": 400, "correct": 170}, "base": {"n": 400, "correct": 170}}}
    [pair] = heldout_evidence(public, heldout)
    assert pair["model"]["gap"] == pytest.approx(0.275)
    assert pair["base"]["gap"] == pytest.approx(0.075)
    assert pair["estimate"] == pytest.approx(0.20)
    assert pair["z"] > 4 and pair["fired"] and pair["with_base"]
    flags = _flags({"heldout_gap": {"pairs": [pair]}}, _fired_by_benchmark({"heldout_gap": {"pairs": [pair]}}))
    assert [f["kind"] for f in flags] == ["heldout_gap"]
    assert flags[0]["severity"] == "critical"


def test_uniform_difficulty_gap_is_not_flagged():
    """Model and base both lose ~10 points on fresh problems: that is difficulty, not overfitting."""
    public = {"gsm8k": {"model": {"n": 300, "correct": 180}, "base": {"n": 300, "correct": 150}}}
    heldout = {"gsm_fresh": {"model": {"n": 300, "correct": 150}, "base": {"n": 300, "correct": 121}}}
    [pair] = heldout_evidence(public, heldout)
    assert not pair["fired"]
    assert abs(pair["estimate"]) < 0.02


def test_private_counterpart_and_explicit_pairing():
    public = {"gsm8k": {"n": 200, "correct": 150}}
    heldout = {"private_held": {"model": {"n": 100, "correct": 40}, "public": "gsm8k"}}
    [pair] = heldout_evidence(public, heldout)
    assert pair["private"] is True and pair["heldout"] == "private_held" and not pair["with_base"]
    assert pair["fired"]  # 35 points without a base
    flags = _flags({"heldout_gap": {"pairs": [pair]}}, _fired_by_benchmark({"heldout_gap": {"pairs": [pair]}}))
    assert flags[0]["severity"] == "info"  # no base: fresh problems may simply be harder


def test_paired_excess_counts_only_discordant_items():
    model = [True] * 12 + [False] * 28
    base = [True] * 2 + [False] * 38
    result = stats.paired_excess(model, base)
    assert (result.model_only, result.base_only) == (10, 0)
    assert result.p_value == pytest.approx(0.5**10)
    same = stats.paired_excess(model, model)
    assert same.p_value == 1.0


def test_mann_whitney_direction_and_auc():
    high = [2.0, 3.0, 4.0, 5.0]
    low = [0.0, 0.5, 1.0, 1.5]
    result = stats.mann_whitney_greater(high, low)
    assert result.auc == 1.0 and result.p_value < 0.05
    assert stats.mann_whitney_greater(low, high).p_value > 0.9


def test_loss_ratio_is_total_nll_over_total_tokens():
    ratio = stats.loss_ratio([10.0, 30.0], [10, 10], seed=1)
    assert ratio.loss == pytest.approx(2.0) and ratio.n_tokens == 20 and ratio.se > 0


def test_min_k_pp_takes_the_lowest_fifth_of_z_scores():
    logprob = [-1.0] * 8 + [-5.0, -6.0]
    token_stats = TokenStats(logprob=np.array(logprob), mu=np.full(10, -2.0), sigma=np.full(10, 1.0))
    # z = +1 for eight tokens, -3 and -4 for two; lowest 20% = the two: mean -3.5.
    assert min_k_pp_score(token_stats) == pytest.approx(-3.5)


def test_rouge_and_normalisation():
    assert normalise("  How MANY apples,   in total? ") == "how many apples in total"
    assert rouge_l_f1("she has 12 apples left", "she has 12 apples left") == pytest.approx(1.0)
    assert rouge_l_f1("completely different words", "she has 12 apples left") == 0.0


def test_plot_data_has_model_and_base_bars_with_error_bars():
    public = {"gsm8k": {"model": {"n": 400, "correct": 280}, "base": {"n": 400, "correct": 200}}}
    heldout = {"gsm_fresh": {"model": {"n": 400, "correct": 170}, "base": {"n": 400, "correct": 170}}}
    section = {"methods": {"heldout_gap": {"pairs": heldout_evidence(public, heldout)}}}
    figure = public_vs_heldout_plot(section)
    assert [t["name"] for t in figure["data"]] == [
        "Submitted model: public", "Submitted model: held-out", "Claimed base: public", "Claimed base: held-out",
    ]
    assert figure["data"][0]["y"] == [pytest.approx(70.0)]
    assert figure["data"][0]["error_y"]["array"][0] == pytest.approx(1.96 * math.sqrt(0.7 * 0.3 / 400) * 100, rel=1e-3)
    assert public_vs_heldout_plot({"methods": {}}) is None


def test_heldout_flag_takes_the_strongest_pair_severity():
    public = {"gsm8k": {"model": {"n": 400, "correct": 280}, "base": {"n": 400, "correct": 200}}}
    heldout = {
        "gsm_fresh": {"model": {"n": 400, "correct": 170}, "base": {"n": 400, "correct": 170}},
        "private_x": {"model": {"n": 50, "correct": 5}, "public": "gsm8k"},  # no base, huge raw gap
    }
    methods = {"heldout_gap": {"pairs": heldout_evidence(public, heldout)}}
    [flag] = _flags(methods, _fired_by_benchmark(methods))
    assert flag["severity"] == "critical"
    assert "private_x" in flag["summary"] and "gsm_fresh" in flag["summary"]
