"""A submission's status needs every applicable check: verified only when each check that
applies ran to its end and nothing was flagged; a check that could not run (disabled, not
installed, crashed, endpoint unreachable or failing more than 1% of requests, a claimed base that
could not be examined, a claim whose setup was not run) gives "incomplete" and names what is
missing. The checks never see an invalid run."""

from __future__ import annotations

import random

import pytest

from verification.checks import CheckContext, ModelRef, run_checks
from verification.claims import ClaimSpec, ClaimsDoc
from verification.compare import Measurement, compare, make_flag
from verification.report import build_report, missing_checks, status_for
from verification.vocabulary import FLAGGED, INCOMPLETE, INVALID, REPORT_SECTIONS, VERIFIED

URL = "http://endpoint.example/v1"


def _context(*, endpoint: str | None = None, base: bool = False, claimed_base: str | None = None,
             benchmarks: dict | None = None, base_benchmarks: dict | None = None) -> CheckContext:
    return CheckContext(
        model=ModelRef("org/m", "org/m", "a" * 40, None),
        base=ModelRef("org/base", "org/base", "b" * 40, None) if base else None,
        candidates=[],
        claims=ClaimsDoc(base_model=claimed_base, endpoint=endpoint),
        intake={},
        benchmarks=benchmarks or {},
        base_benchmarks=base_benchmarks,
        endpoint_url=None,
        endpoint_model=None,
        datasets_dir=None,
        backend_name="transformers",
    )


def _ok(section: str, body: dict | None = None, flags: list | None = None):
    def check(context):
        return section, {"status": "ok", **(body or {})}, list(flags or [])

    check.__qualname__ = f"{section}_check"
    return check


def _report(context: CheckContext, checks=None, enabled=None, benchmarks: dict | None = None) -> dict:
    sections, flags, log = run_checks(context, checks, enabled=enabled)
    return build_report(source="org/m", revision="a" * 40, claimed_base=None, intake={},
                        benchmarks=benchmarks or {}, base=None, sections=sections, flags=flags,
                        run={"checks": log})


ALL_OK = [_ok("provenance"), _ok("contamination"), _ok("endpoint")]


def test_every_applicable_check_ran_and_passed_is_verified():
    report = _report(_context(endpoint=URL, base=True), ALL_OK)
    assert status_for(report) == VERIFIED and report["missing_checks"] == []
    # A check that does not apply (no endpoint named) is not missing; provenance always applies.
    assert status_for(_report(_context(), [_ok("provenance"), _ok("contamination")])) == VERIFIED
    assert status_for(_report(_context(), [_ok("contamination")])) == INCOMPLETE


def test_a_disabled_check_that_applies_is_missing_and_one_that_does_not_is_not():
    report = _report(_context(endpoint=URL), [_ok("provenance"), _ok("contamination")])
    assert status_for(report) == INCOMPLETE
    assert [(m["check"], m["status"]) for m in report["missing_checks"]] == [("endpoint", "not_run")]

    sections, flags, log = run_checks(_context(), enabled=())  # the operator's VERITY_CHECKS=none
    report = build_report(source="org/m", revision=None, claimed_base=None, intake={}, benchmarks={}, base=None,
                          sections=sections, flags=flags, run={"checks": log})
    # Without an endpoint, provenance and contamination apply; disabled, they are what is missing.
    assert status_for(report) == INCOMPLETE
    assert report["missing_checks"] == [
        {"check": name, "status": "disabled", "reason": "disabled by VERITY_CHECKS"}
        for name in ("provenance", "contamination")
    ]


def test_a_crashing_check_gives_incomplete_naming_it():
    def contamination(context):
        raise RuntimeError("probe crashed")

    report = _report(_context(), [_ok("provenance"), contamination])
    assert status_for(report) == INCOMPLETE
    (missing,) = report["missing_checks"]
    assert missing["check"] == "contamination" and missing["status"] == "error" and "probe crashed" in missing["reason"]


def test_a_claimed_base_that_could_not_be_examined_is_missing():
    def provenance(context):  # the registered check's answer when the pipeline has no base
        return "provenance", {"status": "skipped", "reason": "no claimed base model"}, []

    report = _report(_context(claimed_base="org/base"), [provenance, _ok("contamination")])
    assert status_for(report) == INCOMPLETE and report["missing_checks"][0]["check"] == "provenance"
    # With no base claimed provenance still applies (lineage against the known bases, tokens
    # from the model alone): a section that did not run is missing there too.
    assert status_for(_report(_context(), [provenance, _ok("contamination")])) == INCOMPLETE


@pytest.mark.parametrize("section_status", ["unreachable", "error", "refused", "skipped", "not_available"])
def test_an_endpoint_that_could_not_be_checked_is_never_verified(section_status):
    def endpoint(context):
        return "endpoint", {"status": section_status, "verdict": None, "reason": "it failed"}, []

    report = _report(_context(endpoint=URL), [_ok("provenance"), _ok("contamination"), endpoint])
    assert status_for(report) == INCOMPLETE
    assert report["missing_checks"] == [{"check": "endpoint", "status": section_status, "reason": "it failed"}]


def test_a_part_that_could_not_run_is_missing():
    endpoint = _ok("endpoint", {"missing": ["teacher-forced logprobs: the endpoint returned no logprobs"]})
    report = _report(_context(endpoint=URL), [_ok("contamination"), endpoint])
    assert status_for(report) == INCOMPLETE
    assert report["missing_checks"][0]["status"] == "partial" and "logprobs" in report["missing_checks"][0]["reason"]


def test_a_flag_outranks_a_missing_check():
    flag = make_flag("contamination", "critical", "leaked")
    report = _report(_context(endpoint=URL), [_ok("contamination", flags=[flag])])
    assert report["missing_checks"] and status_for(report) == FLAGGED


def test_a_report_without_a_check_log_is_not_verified():
    report = build_report(source="org/m", revision=None, claimed_base=None, intake={}, benchmarks={}, base=None,
                          sections={}, flags=[], run={})
    assert status_for(report) == INCOMPLETE and report["missing_checks"][0]["status"] == "not_run"


def test_a_claim_whose_setup_was_not_run_leaves_the_submission_incomplete():
    m = Measurement("arc_challenge", "1", {"shots": 0, "cot": False, "chat_template": False},
                    52.0, 42.3, 61.5, 100, 0, 0, 0.05)
    benchmarks, flags = compare({"arc_challenge": m}, ClaimsDoc(claims=(ClaimSpec("arc_challenge", 60.0, shots=25),)))
    sections, check_flags, log = run_checks(_context(), [_ok("provenance"), _ok("contamination")])
    report = build_report(source="org/m", revision=None, claimed_base=None, intake={}, benchmarks=benchmarks,
                          base=None, sections=sections, flags=flags + check_flags, run={"checks": log})
    assert flags == [] and status_for(report) == INCOMPLETE
    assert report["missing_checks"] == [{"check": "claims", "status": "not_comparable",
                                         "reason": "arc_challenge: " + benchmarks["arc_challenge"]["verdict_reason"]}]


def test_a_check_that_could_not_run_never_yields_verified():
    """Property: any check log in which some applicable check did not end "ok" (log status or
    section status) gives a status other than verified."""
    rng = random.Random(17)
    statuses = ["ok", "ok", "ok", "error", "unreachable", "disabled", "not_available", "skipped", "refused"]
    for _ in range(300):
        context = _context(endpoint=URL if rng.random() < 0.5 else None, base=rng.random() < 0.5)
        checks = []
        for name in rng.sample(list(REPORT_SECTIONS), rng.randint(0, 3)):
            status = rng.choice(statuses)
            checks.append(_ok(name, {"status": status}) if status != "error" else _crash(name))
        report = _report(context, checks)
        applicable_failed = [
            e for e in report["run"]["checks"]
            if e["applies"] and (e["status"] != "ok" or (report.get(e["section"]) or {}).get("status") != "ok")
        ]
        assert (status_for(report) == VERIFIED) == (not applicable_failed), report["run"]["checks"]
        assert missing_checks(report) == report["missing_checks"]


def _crash(name: str):
    def check(context):
        raise RuntimeError(f"{name} crashed")

    check.__qualname__ = f"{name}_check"
    return check


# --- the endpoint's 1% rule, near the line --------------------------------------------------------


@pytest.mark.parametrize("failed, total, status", [(1, 220, VERIFIED), (2, 200, VERIFIED), (5, 220, INCOMPLETE),
                                                   (22, 220, INCOMPLETE)])
def test_endpoint_failing_half_one_two_and_ten_percent_of_requests(failed, total, status):
    """0.5% and exactly 1% of failed endpoint requests still give a verdict; 2% and 10% give
    none, and the submission is incomplete, never verified."""
    from verification.endpoint import check as endpoint_check

    def endpoint(context):
        section = endpoint_check._base_section(URL, "m")
        counts = {"endpoint": (total, failed, {"server_error": failed}), "weights": (total, 0, {})}
        section, flags = endpoint_check._conclude(section, counts, endpoint_check.ALPHA)
        return "endpoint", section, flags

    report = _report(_context(endpoint=URL), [_ok("provenance"), _ok("contamination"), endpoint])
    assert status_for(report) == status
    assert (report["endpoint"]["verdict"] is None) == (status == INCOMPLETE)


# --- checks never see an invalid run --------------------------------------------------------------


def test_checks_see_only_valid_measurements():
    seen = {}

    def contamination(context):
        seen["model"], seen["base"] = dict(context.benchmarks), dict(context.base_benchmarks or {})
        return "contamination", {"status": "ok"}, []

    valid = {"verdict": "consistent", "measured": 60.0, "n": 100, "n_errors": 1}
    invalid = {"verdict": INVALID, "measured": 10.0, "n": 100, "n_errors": 40}
    base_invalid = {"measured": 5.0, "n": 100, "n_errors": 2, "valid": False}
    context = _context(benchmarks={"gsm8k": valid, "gsm_fresh": invalid},
                       base_benchmarks={"gsm8k": valid, "gsm_fresh": base_invalid})
    run_checks(context, [contamination])
    assert list(seen["model"]) == ["gsm8k"] and list(seen["base"]) == ["gsm8k"]
    # A base section written without "valid" is judged by its error count.
    context = _context(benchmarks={"gsm8k": valid}, base_benchmarks={"gsm8k": {"measured": 5.0, "n": 100, "n_errors": 2}})
    run_checks(context, [contamination])
    assert seen["base"] == {}
