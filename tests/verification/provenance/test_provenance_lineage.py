"""Lineage without a claimed base, sibling bases and untrained tokens from the model alone, on the
zoo of tiny real models in zoo.py (A = tiny-base, B = A continued-pretrained)."""

from __future__ import annotations

import json
import shutil

import pytest

from verification.checks import CheckContext, ModelRef, applies, run_checks
from verification.claims import ClaimsDoc
from verification.provenance import check_provenance
from verification.provenance.check import check_provenance as hook
from verification.provenance.lineage import MAX_SIBLING_POSITION, MAX_UPDATE_TO_GAP
from verification.report import build_report, status_for
from verification.vocabulary import FLAGGED, INCOMPLETE, VERIFIED

from .zoo import RESERVED, THINKING, TURN_TOKENS, provenance_zoo  # noqa: F401 - the fixture

A, B = "verity-test/tiny-base", "verity-test/zoo-base-b"


def kinds(flags: list[dict]) -> list[tuple[str, str]]:
    return sorted((flag["kind"], flag["severity"]) for flag in flags)


def run(model_dir, claimed_dir=None, claimed_name=None, candidates=None, training="full"):
    section, flags = check_provenance(
        model_dir, claimed_dir, candidates=candidates or {}, claimed_training=training, base_name=claimed_name
    )
    json.dumps(section)
    assert section["status"] == "ok"
    return section, flags


@pytest.fixture(scope="module")
def zoo(provenance_zoo, tiny_base):
    return {**provenance_zoo, "a": tiny_base.path}


def sibling(section: dict, challenger: str) -> dict:
    (row,) = [s for s in section["weights"]["siblings"] if s["challenger"] == challenger]
    return row


# --- sibling bases -------------------------------------------------------------------------------


def test_the_sibling_base_is_close_but_distinct(zoo):
    section, flags = run(zoo["base-b"], zoo["a"], A)
    assert flags == [] and section["weights"]["verdict"] == "matches_claimed"
    (row,) = section["weights"]["candidates"]
    # a continued pretraining: derived from A, yet farther from it than a short fine-tune
    assert row["derived"] and 0.1 < row["median_relative_distance"] < 0.4


def test_fine_tune_of_the_older_sibling_claiming_the_newer_is_flagged(zoo):
    section, flags = run(zoo["ft-a"], zoo["base-b"], B, {A: zoo["a"]})
    assert kinds(flags) == [("base_model_mismatch", "critical")]
    evidence = flags[0]["evidence"]
    assert evidence["nearest"] == A and evidence["challenger"]["name"] == A
    assert evidence["challenger"]["median_position"] <= MAX_SIBLING_POSITION
    assert evidence["challenger"]["nearer_challenger_in"] == evidence["challenger"]["of"] == 14
    assert A in flags[0]["summary"] and B in flags[0]["summary"]
    # Not by the old ratio rule: the fine-tune's update is a good part of the siblings' gap.
    by_name = {c["name"]: c for c in section["weights"]["candidates"]}
    assert by_name[A]["median_relative_distance"] / by_name[B]["median_relative_distance"] > 0.5
    assert section["compared_with"] == A


def test_honest_fine_tune_of_the_newer_sibling_is_not_flagged(zoo):
    section, flags = run(zoo["ft-b"], zoo["base-b"], B, {A: zoo["a"]})
    assert flags == []
    assert section["weights"]["verdict"] == "matches_claimed" and section["weights"]["nearest"] == B
    assert sibling(section, A)["median_position"] > 0.9  # at (or past) B on the line from A to B


def test_honest_fine_tune_of_the_older_sibling_claiming_it_is_not_flagged(zoo):
    section, flags = run(zoo["ft-a"], zoo["a"], A, {B: zoo["base-b"]})
    assert flags == [] and section["weights"]["nearest"] == A


def test_fine_tune_of_the_newer_sibling_claiming_the_older_is_flagged(zoo):
    _, flags = run(zoo["ft-b"], zoo["a"], A, {B: zoo["base-b"]})
    assert kinds(flags) == [("base_model_mismatch", "critical")]
    assert flags[0]["evidence"]["challenger"]["name"] == B


@pytest.mark.parametrize("variant", ["ft-a-little", "ft-a-on-b-text"])
def test_near_threshold_planted_siblings_are_flagged(zoo, variant):
    """A barely moved fine-tune of A (5 steps at lr 1e-4), and one trained on B's own
    continued-pretraining text (its update points toward B), both claiming B."""
    _, flags = run(zoo[variant], zoo["base-b"], B, {A: zoo["a"]})
    assert kinds(flags) == [("base_model_mismatch", "critical")]


@pytest.mark.parametrize("variant", ["ft-b-little", "ft-b-much"])
def test_near_threshold_honest_fine_tunes_of_the_newer_sibling_are_not_flagged(zoo, variant):
    section, flags = run(zoo[variant], zoo["base-b"], B, {A: zoo["a"]})
    assert flags == [], flags
    assert sibling(section, A)["median_position"] > 0.9


def test_a_fine_tune_longer_than_the_siblings_gap_is_left_undecided(zoo):
    """Fine-tuned A for longer than B's own continued pretraining, on similar text: its weights sit
    past the midpoint toward B. Claiming A (the truth) must not be flagged; claiming B is then
    not caught either, and the section shows why (update larger than the gap)."""
    section, flags = run(zoo["ft-a-much"], zoo["a"], A, {B: zoo["base-b"]})
    assert flags == []
    row = sibling(section, B)
    assert row["median_position"] < 0.5 and row["median_update_to_gap"] >= MAX_UPDATE_TO_GAP
    assert "not clearly" in section["weights"]["summary"]
    section, flags = run(zoo["ft-a-much"], zoo["base-b"], B, {A: zoo["a"]})
    assert flags == [] and sibling(section, A)["median_update_to_gap"] >= MAX_UPDATE_TO_GAP


# --- no claimed base ------------------------------------------------------------------------------


def test_no_base_claimed_but_derived_from_a_known_one_is_an_undeclared_lineage(zoo):
    section, flags = run(zoo["ft-a"], None, None, {A: zoo["a"], B: zoo["base-b"]})
    assert kinds(flags) == [("base_model_mismatch", "warning")]
    weights = section["weights"]
    assert weights["verdict"] == "undeclared_base" and weights["claimed"] is None and weights["nearest"] == A
    assert weights["challenger"]["also_derived_from"] == [B]
    assert "No base is claimed" in flags[0]["summary"] and A in flags[0]["summary"]
    # the delta analyses and diffs run against the nearest base
    assert section["compared_with"] == A and section["lora"]["verdict"] == "full_fine_tune"
    assert section["config_diff_against"] == A and section["config_diff"] == []


def test_no_base_and_no_known_base_it_derives_from_is_not_flagged(zoo):
    """An honest from-scratch model: compared with every known base, related to none."""
    section, flags = run(zoo["scratch-reserved"], None, None, {A: zoo["a"], B: zoo["base-b"]})
    assert flags == []
    assert section["weights"]["verdict"] == "no_known_base" and section["weights"]["nearest"] is None
    assert section["compared_with"] is None and section["lora"]["verdict"] == "not_analysed"


def test_no_base_and_no_candidates_runs_the_checks_from_the_model_alone(zoo):
    """Honest from-scratch model whose tokenizer declares 32 reserved placeholders (zero rows, all
    equal, never trained, as in Llama 3's base) next to turn tokens its template writes: the
    section is complete ("ok") and nothing is flagged."""
    section, flags = run(zoo["scratch-reserved"])
    assert flags == []
    assert section["weights"]["verdict"] == "no_candidates"
    used = section["used_tokens"]
    assert {e["token"] for e in used["checked"]} >= set(TURN_TOKENS)
    assert set(RESERVED) <= set(used["left_out"]) or used["n_left_out"] >= len(RESERVED)
    assert used["untrained"] == []


def test_untrained_tokens_are_found_without_any_base(zoo):
    section, flags = run(zoo["scratch-raw"])
    assert kinds(flags) == [("untrained_tokens", "warning")]
    found = {e["token"]: e for e in flags[0]["evidence"]["used_tokens"]}
    assert set(found) == set(THINKING)
    for entry in found.values():
        assert set(entry["reasons"]) == {"model.embed_tokens.weight", "lm_head.weight"}
        assert all("duplicate" in reasons for reasons in entry["reasons"].values())
    assert all(token in flags[0]["summary"] for token in THINKING)


def test_untrained_tokens_without_a_claimed_base_are_confirmed_against_the_nearest(provenance_variants, zoo):
    section, flags = run(provenance_variants["tokens-raw"], None, None, {A: zoo["a"], B: zoo["base-b"]})
    assert kinds(flags) == [("base_model_mismatch", "warning"), ("untrained_tokens", "warning")]
    assert section["new_tokens"]["base"] == A and section["new_tokens"]["n_added"] == 3
    assert {e["confirmed"] for e in section["used_tokens"]["untrained"]} == {"added"}


def test_trained_added_tokens_are_not_flagged_from_the_model_alone(provenance_variants):
    section, flags = run(provenance_variants["tokens-trained"])
    assert flags == [] and section["used_tokens"]["untrained"] == []
    assert len(section["used_tokens"]["checked"]) >= 3


def test_untrained_rows_inherited_from_the_base_are_reported_not_flagged(zoo, tmp_path):
    """A copy whose chat template now writes a placeholder that is zero in its base too: the row is
    untrained, but as the base left it (info), not this model's doing (warning)."""
    model = tmp_path / "template-uses-placeholder"
    shutil.copytree(zoo["scratch-reserved"], model)
    template = model / "chat_template.jinja"  # where transformers saves the template
    template.write_text(template.read_text().replace("<|end|>", RESERVED[0]))
    section, flags = run(model, zoo["scratch-reserved"], "org/scratch")
    assert kinds(flags) == [("untrained_tokens", "info")]
    (entry,) = section["used_tokens"]["untrained"]
    assert entry["token"] == RESERVED[0] and entry["confirmed"] == "inherited"
    assert entry["reasons"]["model.embed_tokens.weight"] == ["zero"]
    # Without the base it cannot be told apart: a used token with a zero row is flagged.
    _, flags = run(model)
    assert kinds(flags) == [("untrained_tokens", "warning")]


# --- the pipeline hook and the status ---------------------------------------------------------------


def _context(model, base=None, candidates=(), claims=None) -> CheckContext:
    return CheckContext(
        model=ModelRef("local", None, None, model),
        base=base,
        candidates=list(candidates),
        claims=claims or ClaimsDoc(training="full"),
        intake={"format": "safetensors"},
        benchmarks={},
        base_benchmarks=None,
        endpoint_url=None,
        endpoint_model=None,
        datasets_dir=None,
        backend_name="none",
    )


def _status(context: CheckContext) -> tuple[str, dict]:
    sections, flags, log = run_checks(context, checks=[hook])
    report = build_report(source="local", revision=None, claimed_base=None, intake={}, benchmarks={}, base=None,
                          sections=sections, flags=flags, run={"checks": [e for e in log if e["section"] == "provenance"]})
    return status_for(report), report


def test_provenance_applies_and_runs_without_a_claimed_base(zoo):
    context = _context(zoo["ft-a"], candidates=[ModelRef(A, A, None, zoo["a"])])
    assert applies("provenance", context)
    status, report = _status(context)
    assert status == FLAGGED and report["provenance"]["weights"]["verdict"] == "undeclared_base"
    # An honest from-scratch model with nothing to compare with is verified, not incomplete forever.
    status, report = _status(_context(zoo["scratch-reserved"]))
    assert status == VERIFIED and report["provenance"]["weights"]["verdict"] == "no_candidates"


def test_a_provenance_check_that_could_not_run_never_reads_as_passed(zoo, tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    status, report = _status(_context(empty))  # the check raises: no safetensors weights
    assert status == INCOMPLETE and report["missing_checks"][0]["status"] == "error"
    # A known base that could not be fetched: the comparison with it is missing.
    unfetched = ModelRef("org/unfetched", "org/unfetched", None, None)
    status, report = _status(_context(zoo["scratch-reserved"], candidates=[unfetched]))
    assert status == INCOMPLETE and "org/unfetched" in report["missing_checks"][0]["reason"]
    # A claimed base that could not be had is never judged as "no base claimed".
    status, report = _status(_context(zoo["ft-a"], claims=ClaimsDoc(base_model=B, training="full")))
    assert status == INCOMPLETE and report["provenance"]["status"] == "skipped"
    assert report["flags"] == []
