"""Acceptance: a tiny model that memorised a slice of GSM8K test is flagged by at least two
methods; the same base fine-tuned on GSM8K *train* text only is not flagged (the whole zoo:
test_zoo.py)."""

from __future__ import annotations

import json

from tests.verification.contamination.conftest import MEMORIZED, PROBE_SEED, REFERENCE_SIZE
from verification.checks import CheckContext, ModelRef
from verification.claims import ClaimsDoc


def test_memorizer_is_flagged_by_at_least_two_methods(contamination_results, datasets_dir):
    section, flags = contamination_results["memorizer"]
    assert section["status"] == "ok" and section["base_compared"] and not section["errors"]
    [flag] = [f for f in flags if f["kind"] == "contamination"]
    assert flag["benchmark"] == "gsm8k" and flag["severity"] in {"warning", "critical"}
    assert len(flag["evidence"]["methods"]) >= 2, section["summary"]
    assert section["flagged"] and set(flag["evidence"]["methods"]) <= set(section["fired"])

    completion = section["methods"]["completion"]["by_benchmark"]["gsm8k"]
    # A 2-layer model memorises too loosely to reproduce whole question halves greedily, so
    # the completion probe is measured but need not fire here; it must not favour the base.
    assert completion["n"] == MEMORIZED
    assert completion["model_rate"] >= completion["base_rate"]
    # The reproduced items are real GSM8K test items, shown with their true halves.
    with open(datasets_dir / "gsm8k" / "test.jsonl", encoding="utf-8") as handle:
        questions = [json.loads(line)["question"] for line in handle][:MEMORIZED]
    reproduced = flag["evidence"].get("reproduced", [])
    assert all(shown["truth"].strip()[:20] in questions[shown["index"]] for shown in reproduced)

    skywork = section["methods"]["skywork"]
    assert skywork["model"]["L_test"] < skywork["base"]["L_test"]  # the test text got cheaper
    minkpp = section["methods"]["min_k_pp"]
    # The memorised items rank above GSM8K train items once the base's own score is taken out.
    assert minkpp["delta"]["auc"] > 0.8 and minkpp["delta"]["auc"] > minkpp["base"]["auc"]
    assert "contamination methods agree" in flag["summary"]


def test_clean_finetune_gets_no_contamination_flag(contamination_results):
    section, flags = contamination_results["clean"]
    assert section["status"] == "ok" and not section["errors"]
    assert not [f for f in flags if f["kind"] == "contamination"], section["summary"]
    assert not section["flagged"]
    completion = section["methods"]["completion"]["by_benchmark"]["gsm8k"]
    assert not completion["fired"]


def test_pipeline_check_hook_pairs_heldout_sets_with_their_public_benchmark(contamination_models, tiny_base, datasets_dir):
    """verification.checks calls check_contamination(context); the adapter pairs gsm_fresh with
    GSM8K for model and base and reuses the probes already run (same items, same seed). The
    accuracies are given inputs here: this tests the pairing and the difference-in-differences
    arithmetic; the measured held-out gap runs through the pipeline tests."""
    from verification.contamination import check_contamination

    def ref(model):
        return ModelRef(source=model.repo_id, repo_id=model.repo_id, sha=model.sha, path=model.path)

    context = CheckContext(
        model=ref(contamination_models["memorizer"]),
        base=ref(tiny_base),
        candidates=[],
        claims=ClaimsDoc(),
        intake={},
        benchmarks={"gsm8k": {"measured": 60.0, "n": 200}, "gsm_fresh": {"measured": 30.0, "n": 200}},
        base_benchmarks={"gsm8k": {"measured": 35.0, "n": 200}, "gsm_fresh": {"measured": 33.0, "n": 200}},
        endpoint_url=None, endpoint_model=None, datasets_dir=datasets_dir, backend_name="transformers",
        limit=MEMORIZED,
        options={"gsm_fresh_seed": PROBE_SEED, "contamination_reference_size": REFERENCE_SIZE},
    )
    name, section, flags = check_contamination(context)
    assert name == "contamination"
    [pair] = section["methods"]["heldout_gap"]["pairs"]
    assert (pair["public"], pair["heldout"], pair["with_base"]) == ("gsm8k", "gsm_fresh", True)
    assert pair["estimate"] > 0.2 and pair["fired"]
    assert "heldout_gap" in section["fired_by_benchmark"]["gsm8k"]
    kinds = {f["kind"] for f in flags}
    assert kinds == {"contamination", "heldout_gap"}
    assert section["benchmarks_probed"] == {"gsm8k": MEMORIZED}  # gsm_fresh itself is never probed
