"""`manage.py verify` end to end as a real subprocess: tiny real model in a real HF cache layout
(offline hub), real transformers backend, real benchmark data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.workers.pipeline_helpers import cli_env, engine_score, pickle_only_repo, run_verify, variant_repo

LIMIT = 12


@pytest.fixture
def honest_arc_score(tiny_base, hf_tiny, datasets_dir) -> float:
    """What tiny-base really scores on the first LIMIT ARC items: an honest claim by construction."""
    return engine_score(hf_tiny, "arc_challenge", LIMIT, datasets_dir)


@pytest.mark.slow
def test_honest_claim_passes_and_inflated_claim_is_flagged(
    tiny_base, tiny_other_base, honest_arc_score, tmp_path
):
    claims = tmp_path / "claims.json"
    claims.write_text(
        json.dumps(
            {
                "base_model": tiny_other_base.repo_id,
                "claims": [
                    {"benchmark": "arc_challenge", "score": round(honest_arc_score, 1)},
                    {"benchmark": "mmlu", "score": 92.0, "shots": 0},
                ],
            }
        )
    )
    out = tmp_path / "report.json"
    env = cli_env(tiny_base.path.parents[2], tmp_path / "var", VERITY_CHECKS="provenance,endpoint")
    done = run_verify(
        [
            tiny_base.repo_id,
            "--claims",
            str(claims),
            "--benchmarks",
            "arc_challenge,mmlu",
            "--limit",
            str(LIMIT),
            "--backend",
            "transformers",
            "--json",
            str(out),
        ],
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["schema"] == "verity.report/1"
    assert report["model"] == {
        "source": tiny_base.repo_id,
        "revision": tiny_base.sha,
        "claimed_base": tiny_other_base.repo_id,
    }
    assert report["intake"]["format"] == "safetensors" and report["intake"]["dtype"] == "F32"
    assert report["intake"]["shards"] == 1 and report["intake"]["card"] is True

    arc, mmlu = report["benchmarks"]["arc_challenge"], report["benchmarks"]["mmlu"]
    assert arc["n"] == LIMIT and arc["measured"] == pytest.approx(honest_arc_score, abs=1e-6)
    assert arc["verdict"] == "consistent"
    assert mmlu["verdict"] == "inconsistent" and mmlu["claimed"] == 92.0 and mmlu["measured"] < 60
    assert mmlu["setup"]["shots"] == 0  # the claimed setup, not the default 5-shot
    flags = report["flags"]
    mismatches = [f for f in flags if f["kind"] == "score_mismatch"]
    assert [f["benchmark"] for f in mismatches] == ["mmlu"]
    assert mismatches[0]["severity"] == "critical" and mismatches[0]["evidence"]["z"] > 3
    assert not [f for f in flags if f["benchmark"] == "arc_challenge"]

    # the claimed base is measured on the same items in the same harness
    assert set(report["base"]) == {"arc_challenge", "mmlu"} and report["base"]["mmlu"]["n"] == LIMIT
    assert "uplift" in arc and "mcnemar" in arc
    assert report["endpoint"] is None and report["provenance"]
    assert report["contamination"] == {"status": "disabled", "reason": "disabled by VERITY_CHECKS"}
    run = report["run"]
    assert (
        set(run["dataset_hashes"]) == {"arc_challenge", "mmlu"}
        and run["backend_info"]["backend"] == "transformers"
    )
    # the snapshot was fetched into the model cache at the pinned sha
    entries = Path(env["MODEL_CACHE_DIR"]) / "entries" / "verity-test--tiny-base"
    assert (entries / tiny_base.sha / "model.safetensors").is_file()


REFUSALS = ("pickle", "auto_map", "oversized", "missing", "malformed")


def _refusal_case(
    case: str, tiny_base, hf_cache: Path, work: Path, marker: Path
) -> tuple[str, str, dict[str, str]]:
    """(source, text the reason must contain, extra environment) for one hostile input."""
    if case == "pickle":
        pickle_only_repo(tiny_base.path, work, hf_cache, "verity-test/cli-pickle", marker)
        return "verity-test/cli-pickle", "pickle", {}
    if case == "auto_map":
        variant_repo(
            tiny_base.path,
            work,
            hf_cache,
            "verity-test/cli-automap",
            config_update={"auto_map": {"AutoModelForCausalLM": "evil.EvilModel"}},
        )
        return "verity-test/cli-automap", "trust_remote_code", {}
    if case == "oversized":
        return tiny_base.repo_id, "MAX_MODEL_BYTES", {"MAX_MODEL_BYTES": "1M"}
    if case == "missing":
        return "verity-test/no-such-model", "not in the local Hugging Face cache", {}
    return "verity-test/bad--id", "malformed Hugging Face repo id", {}


def test_pickle_only_repo_exits_2_from_the_real_cli_and_the_pickle_is_never_loaded(tiny_base, tmp_path):
    hf_cache = tiny_base.path.parents[2]
    marker = tmp_path / "unpickled.marker"
    source, expected, extra = _refusal_case("pickle", tiny_base, hf_cache, tmp_path, marker)
    env = cli_env(hf_cache, tmp_path / "var", **extra)
    out = tmp_path / "report.json"
    done = run_verify(
        [source, "--benchmarks", "arc_challenge", "--limit", "2", "--json", str(out)], env, timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert expected in done.stderr and "never unpickles" in done.stderr
    assert not out.exists() and not marker.exists()
    assert _files_left(Path(env["MODEL_CACHE_DIR"])) == []


@pytest.mark.parametrize("case", [c for c in REFUSALS if c != "pickle"])
def test_refused_models_exit_2_with_a_reason_and_leave_nothing_behind(case, tiny_base, tmp_path, monkeypatch):
    """The same command in-process (call_command): CommandError carries the exit status 2."""
    from django.core.management import CommandError, call_command

    hf_cache = tiny_base.path.parents[2]
    source, expected, extra = _refusal_case(case, tiny_base, hf_cache, tmp_path, tmp_path / "marker")
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "model_cache"))
    if "MAX_MODEL_BYTES" in extra:
        monkeypatch.setenv("MAX_MODEL_BYTES", str(1024**2))
    out = tmp_path / "report.json"
    with pytest.raises(CommandError) as error:
        call_command("verify", source, "--benchmarks", "arc_challenge", "--limit", "2", "--json", str(out))
    assert error.value.returncode == 2 and expected in str(error.value)
    assert not out.exists()
    assert _files_left(tmp_path / "model_cache") == []


def _files_left(cache_root: Path) -> list[Path]:
    """Anything a refused model left in the model cache (lock files are not state)."""
    if not cache_root.exists():
        return []
    return [p for p in cache_root.rglob("*") if p.is_file() and "locks" not in p.parts]


def test_bad_claims_file_exits_2(tiny_base, tmp_path):
    from django.core.management import CommandError, call_command

    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"claims": [{"benchmark": "gsm8k", "score": 120}]}))
    with pytest.raises(CommandError) as error:
        call_command("verify", tiny_base.repo_id, "--claims", str(claims))
    assert error.value.returncode == 2 and "outside 0–100" in str(error.value)
