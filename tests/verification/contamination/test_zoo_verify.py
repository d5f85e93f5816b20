"""The zoo through the whole pipeline (`verification.pipeline.verify`: intake, real measurement of
GSM8K and gsm_fresh, the contamination check with the measured held-out gap), and the demo's
tiny-inflated built exactly as `manage.py seed_demo` builds it."""

from __future__ import annotations

import pytest

from tests.verification.contamination.conftest import MEMORIZED, PROBE_SEED, REFERENCE_SIZE, REPO_ROOT
from verification.claims import parse_claims
from verification.pipeline import VerifyRequest, verify

# The probes reuse the session's results (same items, same train and reference samples).
CHECK_OPTIONS = {"gsm_fresh_seed": PROBE_SEED, "contamination_reference_size": REFERENCE_SIZE}


def _verify(source, datasets_dir, *, base=None, limit=MEMORIZED, claims=None, options=CHECK_OPTIONS):
    """As a submission is verified: the claimed benchmarks (gsm_fresh joins gsm8k), no core set."""
    claims = parse_claims({"claims": claims or [{"benchmark": "gsm8k", "score": 0.0, "shots": 0}]})
    return verify(VerifyRequest(
        source=str(source), base=str(base) if base else None, claims=claims, core=(), limit=limit,
        backend="transformers", datasets_dir=datasets_dir, enabled_checks=("contamination",),
        check_options=dict(options),
    ))


@pytest.mark.parametrize(
    ("name", "with_base", "flagged"),
    [("train-only", True, False), ("train-only", False, False), ("leak", True, True), ("leak", False, True)],
    ids=["train-only-base", "train-only-no-base", "leak-base", "leak-no-base"],
)
def test_zoo_through_verify(contamination_models, tiny_base, datasets_dir, name, with_base, flagged):
    report = _verify(contamination_models[name].path, datasets_dir, base=tiny_base.path if with_base else None)
    section = report["contamination"]
    assert section["status"] == "ok" and section["base_compared"] == with_base
    # The held-out gap was measured by the run itself, under GSM8K's setup.
    [pair] = section["methods"]["heldout_gap"]["pairs"]
    assert (pair["public"], pair["heldout"], pair["with_base"]) == ("gsm8k", "gsm_fresh", with_base)
    contamination = [f for f in report["flags"] if f["kind"] == "contamination"]
    assert bool(contamination) == flagged, section["summary"]


def test_demo_tiny_inflated_gets_no_contamination_warning(settings, datasets_dir):
    """tiny-inflated was trained on GSM8K *train* text only; verified as seed_demo verifies it
    (its claimed benchmarks, no core set, the demo's limit, no base, a fresh gsm_fresh seed),
    no contamination or held-out flag may stand."""
    from leaderboard.management.commands import seed_demo

    settings.VAR_DIR = REPO_ROOT / "var" / "test-models" / "seed-demo"  # builds are deterministic: kept
    settings.DATASETS_DIR = datasets_dir
    builds = seed_demo.Command()._build_models()  # the demo's own recipe, not a copy of it
    [inflated] = [m for m in seed_demo.DEMO_MODELS if m.repo_id == "verity-demo/tiny-inflated"]
    assert not inflated.base and "gsm8k" in {c["benchmark"] for c in inflated.claims}
    report = _verify(
        builds[inflated.repo_id], datasets_dir, limit=seed_demo.DEMO_BENCHMARK_LIMIT,
        claims=list(inflated.claims), options={},
    )
    section = report["contamination"]
    assert section["status"] == "ok" and not section["base_compared"]
    assert [p["heldout"] for p in section["methods"]["heldout_gap"]["pairs"]] == ["gsm_fresh"]
    assert not section["flagged"], section["summary"]
    raised = [f for f in report["flags"] if f["kind"] in {"contamination", "heldout_gap"}
              and f["severity"] in {"warning", "critical"}]
    assert not raised, raised
