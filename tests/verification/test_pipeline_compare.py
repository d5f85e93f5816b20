"""Claims vs measurements, the checks hook and the report document (pure functions)."""

from __future__ import annotations

import pytest

from verification.checks import CheckContext, ModelRef, run_checks
from verification.claims import parse_claims
from verification.compare import compare, make_flag, measurement_from_scores
from verification.pipeline import plan_benchmarks
from verification.report import ReportError, build_report, status_for, validate_report


def _measured(slug: str, correct: int, n: int, errors: int = 0):
    scores = {i: 1.0 if i < correct else 0.0 for i in range(n)}
    errored = set(range(n - errors, n))
    return measurement_from_scores(slug, "1", {"shots": 0}, scores, errored, set())


def test_reflection_worked_example_is_inconsistent_with_evidence():
    # methods.md §1: claimed 99.2, measured 95.2 on n = 1319 -> z ≈ 4.8 -> inconsistent
    m = _measured("gsm8k", 1256, 1319)
    section, flags = compare({"gsm8k": m}, parse_claims({"claims": [{"benchmark": "gsm8k", "score": 99.2}]}))
    entry = section["gsm8k"]
    assert entry["verdict"] == "inconsistent" and entry["z"] == pytest.approx(4.8, abs=0.3)
    assert entry["ci_low"] < entry["measured"] < entry["ci_high"]
    assert [(f["kind"], f["severity"], f["benchmark"]) for f in flags] == [
        ("score_mismatch", "critical", "gsm8k")
    ]
    assert flags[0]["evidence"]["n"] == 1319


def test_honest_below_and_unclaimed_are_not_flagged():
    measurements = {
        "arc_challenge": _measured("arc_challenge", 30, 100),
        "mmlu": _measured("mmlu", 50, 100),
        "gsm8k": _measured("gsm8k", 10, 100),
    }
    doc = parse_claims(
        {"claims": [{"benchmark": "arc_challenge", "score": 31.0}, {"benchmark": "mmlu", "score": 20.0}]}
    )
    section, flags = compare(measurements, doc)
    assert section["arc_challenge"]["verdict"] == "consistent"
    assert section["mmlu"]["verdict"] == "claimed_below"
    assert section["gsm8k"]["verdict"] == "unclaimed" and section["gsm8k"]["claimed"] is None
    assert flags == []


def test_error_rate_over_one_percent_invalidates_the_benchmark_instead_of_judging_the_claim():
    m = _measured("gsm8k", 10, 100, errors=2)
    section, flags = compare({"gsm8k": m}, parse_claims({"claims": [{"benchmark": "gsm8k", "score": 99.0}]}))
    assert section["gsm8k"]["verdict"] == "invalid" and section["gsm8k"]["n_errors"] == 2
    assert [f["kind"] for f in flags] == ["invalid_run"]
    # one error in 100 is within the 1% budget: judged normally
    _, flags = compare(
        {"gsm8k": _measured("gsm8k", 10, 100, errors=1)},
        parse_claims({"claims": [{"benchmark": "gsm8k", "score": 99.0}]}),
    )
    assert [f["kind"] for f in flags] == ["score_mismatch"]


def test_zero_percent_has_a_real_interval_and_base_uplift_is_paired():
    zero = _measured("mmlu", 0, 40)
    assert zero.ci_low == 0 and zero.ci_high > 5
    base = _measured("mmlu", 10, 40)
    section, _ = compare({"mmlu": zero}, parse_claims({"claims": []}), {"mmlu": base})
    assert section["mmlu"]["uplift"] == pytest.approx(-25.0)
    assert section["mmlu"]["mcnemar"]["n_paired"] == 40 and section["mmlu"]["mcnemar"]["n_b_only"] == 10


def _context() -> CheckContext:
    return CheckContext(
        model=ModelRef("org/m", "org/m", "a" * 40, None),
        base=None,
        candidates=[],
        claims=parse_claims({"claims": []}),
        intake={},
        benchmarks={},
        base_benchmarks=None,
        endpoint_url=None,
        endpoint_model=None,
        datasets_dir=None,
        backend_name="transformers",
    )


def test_checks_plug_in_and_a_broken_check_never_loses_the_others():
    def provenance(context):
        return (
            "provenance",
            {"nearest": "org/base"},
            [make_flag("base_model_mismatch", "warning", "nearer to x")],
        )

    def contamination(context):
        raise RuntimeError("probe crashed")

    def endpoint(context):
        return "endpoint", {"status": "ok"}, [{"kind": "not_a_kind", "severity": "info", "summary": "x"}]

    sections, flags, log = run_checks(_context(), [provenance, contamination, endpoint])
    assert sections["provenance"] == {"nearest": "org/base"}
    assert (
        sections["contamination"]["status"] == "error"
        and "probe crashed" in sections["contamination"]["error"]
    )
    assert sections["endpoint"]["status"] == "error"  # malformed flag: the check is reported broken
    assert [f["kind"] for f in flags] == ["base_model_mismatch"]
    assert [entry["status"] for entry in log] == ["ok", "error", "error"]


def test_checks_can_be_disabled_by_environment(monkeypatch):
    from verification.config import EngineConfig, ImproperlyConfiguredEnv

    monkeypatch.setenv("VERITY_CHECKS", "none")
    sections, flags, log = run_checks(_context(), enabled=EngineConfig.from_env().checks)
    assert sections["contamination"]["status"] == "disabled" and flags == []
    monkeypatch.setenv("VERITY_CHECKS", "bogus")
    with pytest.raises(ImproperlyConfiguredEnv, match="unknown"):
        EngineConfig.from_env()


def test_report_is_strict_json_and_validated():
    m = _measured("gsm8k", 1256, 1319)
    doc = parse_claims({"claims": [{"benchmark": "gsm8k", "score": 99.2}]})
    benchmarks, flags = compare({"gsm8k": m}, doc)
    benchmarks["gsm8k"]["metrics"] = {"loglik": float("-inf")}
    report = build_report(
        source="org/m",
        revision="a" * 40,
        claimed_base=None,
        intake={"format": "safetensors"},
        benchmarks=benchmarks,
        base=None,
        sections={"endpoint": None},
        flags=flags,
        run={},
    )
    assert report["benchmarks"]["gsm8k"]["metrics"]["loglik"] is None
    assert report["provenance"] == {} and report["endpoint"] is None and status_for(report) == "flagged"
    broken = dict(report, benchmarks={"gsm8k": dict(report["benchmarks"]["gsm8k"], verdict="great")})
    with pytest.raises(ReportError, match="not a verdict"):
        validate_report(broken)
    with pytest.raises(ReportError, match="misses"):
        validate_report({"schema": "verity.report/1"})


def test_plan_uses_the_claimed_setup_when_supported_and_says_so_when_not():
    doc = parse_claims(
        {
            "claims": [
                {"benchmark": "gsm8k", "score": 80, "shots": 8, "cot": True},
                {"benchmark": "mmlu", "score": 70, "cot": True},
            ]
        }
    )
    plan = {p.slug: p for p in plan_benchmarks(doc, core=("arc_challenge",))}
    assert list(plan) == ["gsm8k", "mmlu", "arc_challenge", "gsm_fresh"]  # gsm8k brings its held-out set
    assert (
        plan["gsm8k"].setup == {"shots": 8, "cot": True, "chat_template": False}
        and plan["gsm8k"].note is None
    )
    assert plan["mmlu"].setup["cot"] is False and "not supported" in plan["mmlu"].note
    assert [p.slug for p in plan_benchmarks(doc, explicit=["arc_challenge"])] == ["arc_challenge"]


def test_an_invalid_benchmark_does_not_dilute_the_bonferroni_correction():
    """Every claim is its own family: GSM8K 1000/1319 against a claim of 81.1 is inconsistent
    alone, and stays so beside an invalid MMLU run."""
    claims = parse_claims({"claims": [{"benchmark": "gsm8k", "score": 81.1}, {"benchmark": "mmlu", "score": 60}]})
    gsm8k = _measured("gsm8k", 1000, 1319)
    section, flags = compare({"gsm8k": gsm8k, "mmlu": _measured("mmlu", 50, 100, errors=5)}, claims)
    assert section["mmlu"]["verdict"] == "invalid"
    assert section["gsm8k"]["verdict"] == "inconsistent"
    assert sorted(f["kind"] for f in flags) == ["invalid_run", "score_mismatch"]


def test_a_worker_time_limit_is_never_swallowed_by_a_check():
    """Celery raises its soft time limit inside whatever runs; a check's broad `except` must let
    it through so the worker keeps the run's checkpoint (matched by name: no Celery import)."""

    class SoftTimeLimitExceeded(Exception):
        pass

    def slow_check(context):
        raise SoftTimeLimitExceeded()

    with pytest.raises(SoftTimeLimitExceeded):
        run_checks(_context(), [slow_check])
