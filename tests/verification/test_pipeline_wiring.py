"""The wiring between the pipeline and the held-out sets and checks: gsm_fresh planned with a
recorded seed, private sets planned for every submission, and check failures that cannot leak a
private item's text."""

from __future__ import annotations

import json

import pytest

from verification import pipeline as vp
from verification import private_sets
from verification.benchmarks import gsm_fresh
from verification.checks import CheckContext, ModelRef, run_checks
from verification.claims import ClaimsDoc


def test_gsm_fresh_is_planned_with_gsm8k_and_its_seed_survives_the_run_row(tmp_path):
    plan = vp.plan_benchmarks(ClaimsDoc(), None, ("gsm8k", "arc_challenge"))
    by_slug = {p.slug: p for p in plan}
    assert list(by_slug) == ["gsm8k", "arc_challenge", gsm_fresh.SLUG]
    fresh = by_slug[gsm_fresh.SLUG]
    assert fresh.seed is not None and by_slug["gsm8k"].seed is None
    stored = json.loads(json.dumps([p.as_dict() for p in plan]))  # EvaluationRun.benchmarks
    restored = vp.PlannedBenchmark.from_dict(stored[2])
    assert restored == fresh
    # A resumed run rebuilds exactly the same items from the stored seed.
    first = vp.spec_for_plan(fresh).load(tmp_path, limit=5).items
    again = vp.spec_for_plan(restored).load(tmp_path, limit=5).items
    assert [i.data for i in first] == [i.data for i in again]
    assert vp.check_options_for_plan(plan) == {"gsm_fresh_seed": fresh.seed}
    # No gsm8k, no held-out gap to measure.
    assert gsm_fresh.SLUG not in {p.slug for p in vp.plan_benchmarks(ClaimsDoc(), None, ("arc_challenge",))}


def test_every_registered_private_set_is_planned(tmp_path):
    items = b'{"question": "q1", "choices": ["a", "b"], "answer": 0}\n'
    private_sets.store("private_wiring_mc", "mc", items, directory=tmp_path)
    slugs = vp.register_private_sets(tmp_path)
    assert slugs == ["private_wiring_mc"]
    plan = vp.plan_benchmarks(ClaimsDoc(), None, ("arc_challenge",), private=slugs)
    private = [p for p in plan if p.private]
    assert [p.slug for p in private] == ["private_wiring_mc"]
    assert private[0].version == private_sets.info("private_wiring_mc", directory=tmp_path).version
    assert vp.register_private_sets(tmp_path / "missing") == []


def _context(benchmarks: dict) -> CheckContext:
    return CheckContext(
        model=ModelRef("m", None, None, None), base=None, candidates=[], claims=ClaimsDoc(), intake={},
        benchmarks=benchmarks, base_benchmarks=None, endpoint_url=None, endpoint_model=None,
        datasets_dir=None, backend_name="transformers",
    )


# Built at run time so the traceback's source lines (code, which is kept) cannot contain it.
ITEM_TEXT = "-".join(["SECRET", "QUESTION", "42"])


def _leaky_contamination_check(context):
    raise ValueError(f"item text: {ITEM_TEXT}")


@pytest.mark.parametrize("private", [True, False])
def test_a_raising_check_stores_no_item_text_when_a_private_set_was_measured(private):
    slug = "private_x" if private else "arc_challenge"
    sections, flags, check_log = run_checks(_context({slug: {}}), [_leaky_contamination_check])
    stored = json.dumps([sections, check_log])
    assert flags == [] and sections["contamination"]["status"] == "error"
    assert check_log[0]["traceback"] and "_leaky_contamination_check" in check_log[0]["traceback"]
    if private:
        assert ITEM_TEXT not in stored and "ValueError" in stored
    else:  # public runs keep the full message for debugging
        assert ITEM_TEXT in sections["contamination"]["error"]


def test_humaneval_without_a_sandbox_is_not_run_and_the_report_is_incomplete(tiny_base, datasets_dir, monkeypatch):
    """Generated code never runs outside a sandbox: where none can be made the benchmark is
    reported as not run, with why, and the submission cannot read verified."""
    from verification import sandbox
    from verification.pipeline import VerifyRequest, verify
    from verification.report import missing_checks, status_for

    monkeypatch.setattr(sandbox, "unavailable_reason", lambda limits=None: "no sandbox: namespaces refused (test)")
    report = verify(
        VerifyRequest(source=str(tiny_base.path), benchmarks=["humaneval", "arc_challenge"], limit=2,
                      backend="transformers", datasets_dir=datasets_dir, enabled_checks=())
    )
    assert "humaneval" not in report["benchmarks"] and "arc_challenge" in report["benchmarks"]
    assert report["run"]["not_run"]["humaneval"].startswith("not run: no sandbox")
    assert {"check": "humaneval", "status": "not_run", "reason": report["run"]["not_run"]["humaneval"]} in (
        missing_checks(report)
    )
    assert status_for(report) == "incomplete"
