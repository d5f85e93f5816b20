"""A registered known base submitted (or re-measured) as itself, and the ways a submitter might try
to pass for one: the pipeline's candidate resolution (verification.pipeline.candidate_refs) and the
provenance hook on the zoo's tiny real models, installed in the session's offline HF cache.

B (zoo base-b) is A (tiny-base) continued-pretrained, and both are registered: B submitted as itself
derives from A, which is B's registered history, not an undeclared lineage. Only the exact
registered model (repo id and pinned sha) is exempt; a name alone, or B's weights under another name,
or B named as a candidate by the submitter, is not."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from verification import intake
from verification import pipeline as vp
from verification import tinymodels as tm
from verification.checks import CheckContext, ModelRef, run_checks
from verification.claims import ClaimsDoc
from verification.provenance import check_provenance, shape_signature
from verification.provenance.check import check_provenance as hook
from verification.report import build_report, status_for
from verification.vocabulary import FLAGGED

from .zoo import provenance_zoo  # noqa: F401 - the fixture

A, B = "verity-test/tiny-base", "verity-test/zoo-base-b"
B_REUPLOAD = "verity-test/zoo-base-b-reupload"


@pytest.fixture(scope="module")
def repos(provenance_zoo, tiny_base, hf_cache) -> dict[str, str]:
    """B at refs/main; B's very files under another name; A's fine-tune pushed to B's repo under
    another ref (a model named like B with other weights)."""
    shas = {A: tiny_base.sha, B: tm.install_in_hf_cache(provenance_zoo["base-b"], hf_cache, B)}
    shas[B_REUPLOAD] = tm.install_in_hf_cache(provenance_zoo["base-b"], hf_cache, B_REUPLOAD)
    shas["ft-a-as-b"] = tm.install_in_hf_cache(provenance_zoo["ft-a"], hf_cache, B, ref="fork")
    shas["ft-b-as-b"] = tm.install_in_hf_cache(provenance_zoo["ft-b"], hf_cache, B, ref="fork-b")
    assert shas[B_REUPLOAD] == shas[B] != shas["ft-a-as-b"]  # the snapshot sha is the files' content
    return shas


def registry(repos: dict[str, str], tiny_base, b_revision: str | None) -> list[vp.CandidateSource]:
    """The KnownBase rows as the worker passes them (workers/steps.py)."""
    signature = shape_signature(tiny_base.path)
    return [
        vp.CandidateSource(A, None, signature, registered=True),
        vp.CandidateSource(B, b_revision, signature, registered=True),
    ]


def check(source: str, revision: str | None, candidates: list[vp.CandidateSource]):
    """(status, report, candidate refs) of the provenance check on `source` at `revision`, no base
    claimed, the candidates resolved by the pipeline itself."""
    pinned = intake.inspect_source(source, revision)
    with ExitStack() as stack:
        model = ModelRef(pinned.source, pinned.repo_id, pinned.sha, stack.enter_context(vp.model_files(pinned, None)))
        refs = vp.candidate_refs(candidates, model, None, None, stack)
        context = CheckContext(
            model=model, base=None, candidates=refs, claims=ClaimsDoc(training="full"),
            intake={"format": "safetensors"}, benchmarks={}, base_benchmarks=None, endpoint_url=None,
            endpoint_model=None, datasets_dir=None, backend_name="none",
        )
        sections, flags, log = run_checks(context, checks=[hook])
    log = [entry for entry in log if entry["section"] == "provenance"]
    assert [entry["status"] for entry in log] == ["ok"]
    report = build_report(source=source, revision=pinned.sha, claimed_base=None, intake={}, benchmarks={},
                          base=None, sections=sections, flags=flags, run={"checks": log})
    return status_for(report), report, refs


def lineage_flags(report: dict) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["severity"]) for f in report["flags"] if f["kind"] == "base_model_mismatch")


def compared(report: dict) -> set[str]:
    return {row["name"] for row in report["provenance"]["weights"]["candidates"]}


# --- the registered base itself: not flagged ------------------------------------------------------


@pytest.mark.parametrize("pinned", ["sha", "none", "branch"])
def test_a_registered_base_submitted_as_itself_is_not_flagged(repos, tiny_base, pinned):
    revision = {"sha": repos[B], "none": None, "branch": "main"}[pinned]  # "main" resolves to B's sha
    status, report, refs = check(B, repos[B], registry(repos, tiny_base, revision))
    (itself,) = [ref for ref in refs if ref.is_model]
    assert itself.repo_id == B and itself.sha == repos[B]
    provenance = report["provenance"]
    assert status != FLAGGED and lineage_flags(report) == [("base_model_mismatch", "info")]
    assert provenance["registered_as"] == B and provenance["weights"]["verdict"] == "registered_base"
    # The nearest other known base is the evidence: B was continued from A.
    assert provenance["weights"]["nearest"] == A and provenance["compared_with"] == A
    assert "registered known base" in provenance["weights"]["summary"]
    (flag,) = [f for f in report["flags"] if f["kind"] == "base_model_mismatch"]
    assert flag["evidence"]["registered_as"] == B and flag["evidence"]["nearest"] == A
    # Never compared with itself (distance 0 would read as a copy of a known base).
    assert compared(report) == {A}


def test_the_registered_base_alone_in_the_registry_is_compared_with_nothing(repos, tiny_base):
    signature = shape_signature(tiny_base.path)
    status, report, refs = check(B, repos[B], [vp.CandidateSource(B, repos[B], signature, registered=True)])
    assert [ref.is_model for ref in refs] == [True] and report["flags"] == [] and status != FLAGGED
    assert report["provenance"]["weights"]["verdict"] == "no_candidates" and compared(report) == set()


# --- the ways to pass for a registered base: flagged as the weights say ---------------------------


@pytest.mark.parametrize("b_revision", ["sha", "none"])
def test_the_registered_base_re_uploaded_under_another_name_is_an_undeclared_lineage(repos, tiny_base, b_revision):
    revision = repos[B] if b_revision == "sha" else None
    status, report, refs = check(B_REUPLOAD, None, registry(repos, tiny_base, revision))
    assert not any(ref.is_model for ref in refs)  # same sha, but not the registered repo
    assert status == FLAGGED and lineage_flags(report) == [("base_model_mismatch", "warning")]
    weights = report["provenance"]["weights"]
    assert weights["verdict"] == "undeclared_base" and weights["nearest"] == B
    (row,) = [r for r in weights["candidates"] if r["name"] == B]
    assert row["median_relative_distance"] == 0.0  # the very weights of B
    assert report["provenance"]["registered_as"] is None


def test_a_model_named_like_the_registered_base_behaves_as_its_weights_say(repos, tiny_base):
    # A's fine-tune at another revision of B's repo: B is registered at its own sha, so the name
    # exempts nothing; B's registered revision is fetched and compared, and the weights lead to A.
    status, report, refs = check(B, repos["ft-a-as-b"], registry(repos, tiny_base, repos[B]))
    assert not any(ref.is_model for ref in refs)
    b_at_registered = f"{B}@{repos[B][:12]}"
    assert status == FLAGGED and lineage_flags(report) == [("base_model_mismatch", "warning")]
    assert report["provenance"]["weights"]["nearest"] == A and compared(report) == {A, b_at_registered}
    # B's fine-tune under B's name, not the registered revision: a fine-tune of B that declares no base.
    status, report, _ = check(B, repos["ft-b-as-b"], registry(repos, tiny_base, repos[B]))
    assert status == FLAGGED and lineage_flags(report) == [("base_model_mismatch", "warning")]
    assert report["provenance"]["weights"]["nearest"] == b_at_registered


def test_naming_the_registered_base_as_a_candidate_exempts_nothing(repos, tiny_base):
    # Candidates the submitter (or a CLI operator) names are not the maintainers' registry.
    signature = shape_signature(tiny_base.path)
    for own in (vp.CandidateSource(B, repos[B]), vp.CandidateSource(B, repos[B], signature)):
        status, report, refs = check(B, repos[B], [vp.CandidateSource(A), own])
        assert not any(ref.is_model for ref in refs) and [ref.repo_id for ref in refs] == [A]
        assert status == FLAGGED and lineage_flags(report) == [("base_model_mismatch", "warning")]
        assert report["provenance"]["weights"]["nearest"] == A and compared(report) == {A}


# --- the engine alone -----------------------------------------------------------------------------


def test_the_engine_never_compares_a_model_with_itself(provenance_zoo, tiny_base):
    b = provenance_zoo["base-b"]
    # The same directory under another name is skipped, exempt or not.
    section, flags = check_provenance(b, None, candidates={A: tiny_base.path, "alias": b}, claimed_training="full")
    assert {row["name"] for row in section["weights"]["candidates"]} == {A}
    assert [(f["kind"], f["severity"]) for f in flags] == [("base_model_mismatch", "warning")]
    # The registered name is dropped even if it reached the engine with files of its own.
    section, flags = check_provenance(
        b, None, candidates={A: tiny_base.path, B: provenance_zoo["ft-b"]}, claimed_training="full", registered_as=B
    )
    assert {row["name"] for row in section["weights"]["candidates"]} == {A}
    assert section["weights"]["verdict"] == "registered_base"
    assert [(f["kind"], f["severity"]) for f in flags] == [("base_model_mismatch", "info")]


def test_a_registered_base_that_derives_from_no_other_is_plainly_reported(provenance_zoo, tiny_base):
    section, flags = check_provenance(
        tiny_base.path, None, candidates={B: provenance_zoo["base-b"]}, claimed_training="full", registered_as=A
    )
    # A is B's ancestor: B is derived-looking from A's side too, and A is the registry's, so info.
    assert section["registered_as"] == A
    assert all(f["severity"] == "info" for f in flags if f["kind"] == "base_model_mismatch")
    section, flags = check_provenance(
        provenance_zoo["scratch-reserved"], None, candidates={A: tiny_base.path}, claimed_training="full",
        registered_as="org/scratch",
    )
    assert section["weights"]["verdict"] == "no_known_base"
    assert not [f for f in flags if f["kind"] == "base_model_mismatch"]
