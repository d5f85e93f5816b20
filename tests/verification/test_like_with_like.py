"""Like with like: a held-out set is measured under the setup of the public set it is compared
with, and results are keyed by everything that defines their items (gsm_fresh's seed)."""

from __future__ import annotations

import pytest

from verification import pipeline as vp
from verification.benchmarks import gsm_fresh
from verification.claims import parse_claims


def _plan(claims: dict, core=("gsm8k",)) -> dict:
    return {p.slug: p for p in vp.plan_benchmarks(parse_claims(claims), core=core)}


@pytest.mark.parametrize(
    "claim, setup",
    [
        ({"benchmark": "gsm8k", "score": 80, "shots": 8, "cot": True}, {"shots": 8, "cot": True, "chat_template": False}),
        ({"benchmark": "gsm8k", "score": 80, "shots": 0}, {"shots": 0, "cot": False, "chat_template": False}),
        ({"benchmark": "gsm8k", "score": 80, "chat_template": True}, {"shots": 5, "cot": False, "chat_template": True}),
        # Unsupported: gsm8k falls back to the standard setup, and gsm_fresh with it.
        ({"benchmark": "gsm8k", "score": 80, "shots": 25}, {"shots": 5, "cot": False, "chat_template": False}),
    ],
)
def test_gsm_fresh_is_measured_under_gsm8ks_planned_setup(claim, setup):
    plan = _plan({"claims": [claim]})
    assert plan["gsm8k"].setup == setup and plan[gsm_fresh.SLUG].setup == setup
    assert plan[gsm_fresh.SLUG].setup_key == plan["gsm8k"].setup_key


def test_without_a_claim_both_use_the_standard_setup():
    plan = _plan({"claims": []})
    assert plan["gsm8k"].setup == plan[gsm_fresh.SLUG].setup == {"shots": 5, "cot": False, "chat_template": False}


def test_gsm_fresh_results_are_keyed_by_their_seed(monkeypatch):
    """Two plans with different seeds (two submissions, or a model and another submission's
    cached base) never share a (benchmark, version, setup) key, so a stored result of other
    items is never taken for this run's; the same seed gives the same key."""
    seeds = iter([111, 222])
    monkeypatch.setattr(gsm_fresh, "new_seed", lambda: next(seeds))
    first, second = _plan({"claims": []})[gsm_fresh.SLUG], _plan({"claims": []})[gsm_fresh.SLUG]
    key = lambda p: (p.slug, p.version, p.setup_key)  # noqa: E731  (workers.storage's cache key)
    assert key(first) != key(second)
    assert first.version == gsm_fresh.version_for(111) and second.version.endswith("222")
    assert key(vp.PlannedBenchmark.from_dict(first.as_dict())) == key(first)
    assert vp.spec_for_plan(first).version == first.version  # what the runner records with the result
    assert len(gsm_fresh.version_for(2**63 - 1)) <= 32  # BenchmarkResult.benchmark_version
    assert gsm_fresh.spec().version == gsm_fresh.VERSION  # the registry's seedless spec
