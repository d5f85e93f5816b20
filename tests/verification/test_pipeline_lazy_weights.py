"""`conclude` fetches weights only for the checks that run and read them: with the checks off (or
only checks that read no weights) the host that concludes never touches the model cache, so a
fleet does not pull a 140 GB base to write a report; with them on, every file they read is had.

The tiny models come from the session's offline HF cache through a real ModelCache (real fills,
real locks); the subclass only records which snapshots were asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from verification import intake as intake_mod
from verification import pipeline as vp
from verification.claims import ClaimsDoc
from verification.modelcache import ModelCache


class RecordingCache(ModelCache):
    """A real model cache that records every snapshot asked of it (repo ids, in order)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    def use(self, repo_id, sha, allow_patterns, expected_bytes=0):
        self.asked.append(repo_id)
        return super().use(repo_id, sha, allow_patterns, expected_bytes)


def refusing_fetch(repo_id, sha, allow_patterns, destination):
    raise AssertionError(f"conclude downloaded {repo_id}@{sha[:8]} though no check reads it")


@pytest.fixture
def models(tiny_base, tiny_other_base):
    """The submitted model and its claimed base, pinned as intake pins them."""
    model = intake_mod.inspect_source(tiny_base.repo_id, tiny_base.sha)
    base = intake_mod.inspect_source(tiny_other_base.repo_id, tiny_other_base.sha)
    assert model.kind == base.kind == "hub"  # so their files come from the model cache
    return model, base


def conclusion(models, datasets_dir, **fields) -> vp.Conclusion:
    model, base = models
    values = dict(
        model=model, base=base, claims=ClaimsDoc(base_model=base.repo_id), plan=[], measurements={},
        base_measurements={}, backend="transformers", limit=4, datasets_dir=datasets_dir,
        claimed_base=base.repo_id,
    )
    values.update(fields)
    return vp.Conclusion(**values)


# Probes standing in for the registered checks: named like them (the pipeline knows a check's
# section by its name, as run_checks does), recording the files they were handed.
SEEN: dict[str, dict[str, Path | None]] = {}


def _record(section: str, context) -> None:
    SEEN[section] = {
        "model": context.model.path,
        "base": context.base.path if context.base else None,
        "candidates": [ref.path for ref in context.candidates],
    }


def provenance_probe(context):
    _record("provenance", context)
    return "provenance", {"status": "ok"}, []


def contamination_probe(context):
    _record("contamination", context)
    return "contamination", {"status": "ok"}, []


def endpoint_probe(context):
    _record("endpoint", context)
    return "endpoint", None, []


def unnamed_probe(context):
    _record("unnamed", context)
    return "provenance", {"status": "ok"}, []


@pytest.fixture(autouse=True)
def clear_seen():
    SEEN.clear()


@pytest.mark.parametrize("enabled", [(), ("endpoint",)], ids=["VERITY_CHECKS=none", "endpoint-without-endpoint"])
def test_with_no_check_reading_weights_conclude_never_touches_the_model_cache(models, datasets_dir, tmp_path, enabled):
    cache = RecordingCache(tmp_path / "cache", 10**9, fetch=refusing_fetch)
    candidates = [vp.CandidateSource("verity-test/no-such-candidate")]
    report = vp.conclude(conclusion(models, datasets_dir, enabled_checks=enabled, candidates=candidates), cache=cache)
    assert cache.asked == [] and cache.entries() == []
    log = {entry["section"]: entry for entry in report["run"]["checks"]}
    assert log["provenance"]["status"] == log["contamination"]["status"] == "disabled"
    # The endpoint check applies only when an endpoint is named: none is, so it reads nothing.
    assert log["endpoint"]["status"] == ("ok" if enabled else "disabled") and log["endpoint"]["applies"] is False
    if enabled:
        assert report["endpoint"] is None
    assert report["model"]["revision"] == models[0].sha


def test_no_checks_at_all_fetch_nothing(models, datasets_dir, tmp_path):
    cache = RecordingCache(tmp_path / "cache", 10**9, fetch=refusing_fetch)
    vp.conclude(conclusion(models, datasets_dir), cache=cache, checks=[])
    assert cache.asked == []


def test_each_check_gets_exactly_the_files_it_reads(models, datasets_dir, tmp_path, tiny_base, tiny_other_base):
    candidate = [vp.CandidateSource(tiny_other_base.repo_id)]  # an explicit candidate: always compared
    cases = (
        ([provenance_probe], [tiny_base.repo_id, tiny_other_base.repo_id, tiny_other_base.repo_id]),
        ([contamination_probe], [tiny_base.repo_id, tiny_other_base.repo_id]),
        ([endpoint_probe], [tiny_base.repo_id]),
        ([unnamed_probe], [tiny_base.repo_id, tiny_other_base.repo_id, tiny_other_base.repo_id]),
    )
    for checks, asked in cases:
        cache = RecordingCache(tmp_path / checks[0].__name__, 10**9)
        c = conclusion(models, datasets_dir, candidates=candidate, endpoint_url="https://endpoint.invalid/v1")
        vp.conclude(c, cache=cache, checks=checks)
        assert cache.asked == asked, checks[0].__name__
    assert (SEEN["provenance"]["model"] / "config.json").is_file()
    assert (SEEN["provenance"]["base"] / "config.json").is_file()
    assert len(SEEN["provenance"]["candidates"]) == 1 and SEEN["provenance"]["candidates"][0].is_dir()
    assert SEEN["contamination"]["base"].is_dir() and SEEN["contamination"]["candidates"] == []
    assert SEEN["endpoint"]["model"].is_dir() and SEEN["endpoint"]["base"] is None
    assert SEEN["unnamed"]["candidates"][0].is_dir()  # a check the pipeline cannot place gets everything


def test_the_endpoint_check_reads_the_model_only_when_an_endpoint_is_named(models, datasets_dir, tmp_path):
    cache = RecordingCache(tmp_path / "cache", 10**9, fetch=refusing_fetch)
    vp.conclude(conclusion(models, datasets_dir), cache=cache, checks=[endpoint_probe])
    assert cache.asked == [] and SEEN["endpoint"]["model"] is None
    claims = ClaimsDoc(base_model=models[1].repo_id, endpoint="https://endpoint.invalid/v1")
    needed = vp.files_needed(conclusion(models, datasets_dir, claims=claims), [endpoint_probe])
    assert needed == vp.FilesNeeded(model=True)  # an endpoint named in the claims counts too


def test_registered_checks_are_sized_from_verity_checks(models, datasets_dir):
    def needed(enabled, **fields):
        return vp.files_needed(conclusion(models, datasets_dir, enabled_checks=enabled, **fields))

    assert needed(None) == vp.ALL_FILES
    assert needed(("provenance",)) == vp.ALL_FILES
    assert needed(("contamination",)) == vp.FilesNeeded(model=True, base=True)
    assert needed(("contamination", "endpoint")) == vp.FilesNeeded(model=True, base=True)
    assert needed(("endpoint",)) == vp.FilesNeeded()
    assert needed(("endpoint",), endpoint_url="https://endpoint.invalid/v1") == vp.FilesNeeded(model=True)
    assert needed(()) == vp.FilesNeeded()


def test_with_provenance_on_the_model_and_base_are_fetched_and_compared(models, datasets_dir, tmp_path):
    """Behaviour unchanged with the check on: the real provenance check runs on both snapshots
    from the cache (tiny-base and tiny-other are unrelated models, so the claimed lineage fails)."""
    cache = RecordingCache(tmp_path / "cache", 10**9)
    report = vp.conclude(conclusion(models, datasets_dir, enabled_checks=("provenance",)), cache=cache)
    model, base = models
    assert cache.asked == [model.repo_id, base.repo_id]
    assert {entry.path.parent.name for entry in cache.entries()} == {"verity-test--tiny-base", "verity-test--tiny-other"}
    assert report["provenance"]["status"] == "ok"
    assert "base_model_mismatch" in {flag["kind"] for flag in report["flags"]}
