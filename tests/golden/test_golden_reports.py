"""Golden reports: `verify` on tiny real models gives the same verdicts, flags and measurements
as the code it was recorded with.

Each case runs the whole `verify` command in this process (the engine's
`python -m verification verify` when it exists, else `manage.py verify`; see recorder.py) on a
tiny model from the suite's fixtures, offline, with the transformers backend and small --limit
values, and compares the report's digest (recorder.digest: verdicts, flags with kind, severity,
benchmark and summary, measurements with their intervals, n, n_errors, n_unparsed, and each
section's verdict-like fields) with tests/golden/reports/<case>.json. Timings, versions, paths,
ports and the run log are not compared. gsm_fresh's seed, random per run in production, is fixed
here, so the fresh items (and the contamination probes drawn from the same seed) are the same
every time.

Together the cases raise every flag kind `verify` can raise: score_mismatch, invalid_run,
base_model_mismatch, lora_merge, untrained_tokens, contamination, heldout_gap and
endpoint_mismatch; the honest case raises none. weights_changed is not covered: only the
periodic re-check of verified repos raises it, never `verify`.

Re-record after an intended change of behaviour (and review the diff of reports/*.json):

    VERITY_RECORD_GOLDEN=1 .venv/bin/python -m pytest tests/golden/test_golden_reports.py -q

Each model's pinned sha is compared first: a different sha means the fixture model itself changed
(its build, not the code under test), which the failure says. The module takes about 30 s on a
2-core machine once the tiny models are built (they are cached under var/test-models/).

VERITY_GOLDEN_ENTRY=engine|manage forces the command-line entry the cases run through, and
VERITY_GOLDEN_DUMP=DIR keeps every full report there (DIR/<case>.json) to look into a difference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.golden import recorder
from tests.golden.conftest import ANSWER_MEMORIZER, MEMORIZED, TERSE
from tests.golden.recorder import Case
from verification import tinymodels as tm

# gsm_fresh's generator seed for every case (production draws a fresh one per run).
FRESH_SEED = 20261121
MC_LIMIT = 12  # multiple-choice items per benchmark: cheap, and enough for a clear mismatch

A, B = "verity-test/tiny-base", "verity-test/tiny-other"
FULL_FT = "verity-test/golden-full-ft"
SHORT_CONTEXT = "verity-test/golden-short-context"
LORA_MERGE = "verity-test/golden-lora-merge"
TOKENS_RAW = "verity-test/golden-tokens-raw"

CASES = (
    Case(
        "honest_fine_tune",
        FULL_FT,
        benchmarks="arc_challenge",
        limit=MC_LIMIT,
        checks="provenance,endpoint",
        claims={"base_model": A, "training": "full", "claims": [{"benchmark": "arc_challenge", "score": 25.0}]},
        candidates=(B,),
    ),
    Case(
        "score_mismatch_invalid_run",
        SHORT_CONTEXT,
        benchmarks="arc_challenge,gsm8k",
        limit=MC_LIMIT,
        checks="none",
        claims={"claims": [{"benchmark": "arc_challenge", "score": 95.0}, {"benchmark": "gsm8k", "score": 60.0}]},
        expected_kinds=("score_mismatch", "invalid_run"),
    ),
    Case(
        "lora_merge_from_another_base",
        LORA_MERGE,
        benchmarks="arc_challenge",
        limit=MC_LIMIT,
        checks="provenance",
        claims={"base_model": B, "training": "full", "claims": [{"benchmark": "arc_challenge", "score": 30.0}]},
        candidates=(A,),
        expected_kinds=("base_model_mismatch", "lora_merge"),
    ),
    Case(
        "untrained_tokens",
        TOKENS_RAW,
        benchmarks="arc_challenge",
        limit=MC_LIMIT,
        checks="provenance",
        claims={"base_model": A, "training": "full"},
        candidates=(B,),
        expected_kinds=("untrained_tokens",),
    ),
    Case(
        "memorized_gsm8k_answers",
        ANSWER_MEMORIZER,
        benchmarks="gsm8k,gsm_fresh",
        limit=MEMORIZED,
        checks="contamination",
        claims={"claims": [{"benchmark": "gsm8k", "score": 80.0, "shots": 0}]},
        expected_kinds=("contamination", "heldout_gap"),
    ),
    Case(
        "endpoint_serving_another_model",
        TERSE,
        benchmarks="arc_challenge",
        limit=4,
        checks="endpoint",
        endpoint="{fault_server}/claude/v1",
        expected_kinds=("endpoint_mismatch",),
    ),
)


@pytest.fixture(scope="session")
def golden_models(tiny_base, tiny_other_base, provenance_variants, golden_builds, hf_cache, tmp_path_factory):
    """Every source a case names, installed in the session's offline HF cache."""
    work = tmp_path_factory.mktemp("golden-models")
    tm.install_in_hf_cache(provenance_variants["full-ft"], hf_cache, FULL_FT)
    tm.install_in_hf_cache(provenance_variants["lora-merge"], hf_cache, LORA_MERGE)
    tm.install_in_hf_cache(provenance_variants["tokens-raw"], hf_cache, TOKENS_RAW)
    # A context window far shorter than a few-shot GSM8K prompt: every generation fails.
    short = work / "short-context"
    shutil.copytree(tiny_base.path, short)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 96}))
    tm.install_in_hf_cache(short, hf_cache, SHORT_CONTEXT)
    return hf_cache


@pytest.fixture(scope="session")
def shared_model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("golden-model-cache")


@pytest.fixture
def verify_env(monkeypatch, settings, shared_model_cache, datasets_dir):
    """Each setting both ways: read from the environment when the command runs, or copied into
    Django settings at start-up (manage.py verify reads those)."""
    from verification.benchmarks import gsm_fresh

    monkeypatch.setattr(gsm_fresh, "new_seed", lambda: FRESH_SEED)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODEL_CACHE_DIR", str(shared_model_cache))
    monkeypatch.setenv("DATASETS_DIR", str(datasets_dir))
    monkeypatch.setenv("INFERENCE_BACKEND", "transformers")
    monkeypatch.setenv("VERITY_ENDPOINT_ALLOW_LOOPBACK", "1")
    monkeypatch.delenv("DEFAULT_EVAL_LIMIT", raising=False)
    settings.MODEL_CACHE_DIR = shared_model_cache
    settings.DATASETS_DIR = datasets_dir
    settings.INFERENCE_BACKEND = "transformers"
    return monkeypatch


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verify_report_matches_golden(case: Case, golden_models, fault_server, verify_env, settings, tmp_path):
    verify_env.setenv("VERITY_CHECKS", case.checks)
    settings.CHECKS = () if case.checks == "none" else tuple(case.checks.split(","))
    claims_path = tmp_path / "claims.json"
    claims_path.write_text(json.dumps({"claims": [], **case.claims}))
    out_path = tmp_path / "report.json"
    endpoint_base = f"http://127.0.0.1:{fault_server.port}"
    report = recorder.run_verify(case.arguments(claims_path, out_path, endpoint_base), out_path)
    recorder.dump_report(case.name, report)
    actual = recorder.digest(report)

    kinds = sorted({flag["kind"] for flag in actual["flags"]})
    assert set(case.expected_kinds) <= set(kinds), f"{case.name} raised {kinds}"
    if not case.expected_kinds:
        assert kinds == [], f"{case.name} should raise no flag, raised {kinds}"
    if recorder.recording():
        path = recorder.save_golden(case.name, actual)
        pytest.skip(f"recorded {path}")
    expected = recorder.load_golden(case.name)
    recorded_sha, sha = expected["model"].get("revision"), actual["model"].get("revision")
    if sha != recorded_sha:
        # Another machine trained the fixture model to other last bits: its exact numbers are
        # not comparable, what the case decides still is.
        problems = recorder.differences(recorder.outcome(actual), recorder.outcome(expected))
        assert not problems, (
            f"{case.name}: the fixture model {case.source} is not the one recorded ({sha} vs {recorded_sha}) "
            "and the outcome differs:\n" + "\n".join(problems[:40])
        )
        pytest.xfail(f"{case.name}: same outcome; exact numbers not compared (fixture built to other bits)")
    problems = recorder.differences(actual, expected)
    assert not problems, f"{case.name}: the report differs from its golden file:\n" + "\n".join(problems[:40])


# The flag kinds `verify` could raise when the golden files were recorded. A kind added later
# gets its own case (recorded on the code that raises it), not an edit of these files.
RECORDED_KINDS = (
    "score_mismatch", "invalid_run", "base_model_mismatch", "lora_merge", "untrained_tokens",
    "contamination", "heldout_gap", "endpoint_mismatch",
)


def test_every_recorded_flag_kind_has_a_case_and_is_still_a_flag_kind():
    try:
        from verification.vocabulary import FLAG_KINDS
    except ImportError:  # the vocabulary's home before the single-pipeline refactor
        from verification.compare import FLAG_KINDS

    covered = {kind for case in CASES for kind in case.expected_kinds}
    assert covered == set(RECORDED_KINDS)
    assert set(RECORDED_KINDS) <= set(FLAG_KINDS)
