"""Sibling bases and lineage without a claimed base through the whole `verify` command (a real
subprocess, offline HF cache, --candidate) and through a real Celery worker, where the registered
KnownBase rows are the candidates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workers.pipeline_helpers import cli_env, wait_for
from verification import tinymodels as tm

from .zoo import provenance_zoo  # noqa: F401 - the fixture

REPO_ROOT = Path(__file__).resolve().parents[3]
A = "verity-test/tiny-base"
B = "verity-test/zoo-base-b"
FT_A = "verity-test/zoo-ft-a"
FT_B = "verity-test/zoo-ft-b"


@pytest.fixture(scope="module")
def zoo_repos(provenance_zoo, tiny_base, hf_cache) -> dict[str, str]:
    """The zoo models a case names, installed in the session's offline HF cache."""
    shas = {}
    for repo_id, folder in ((B, "base-b"), (FT_A, "ft-a"), (FT_B, "ft-b")):
        shas[repo_id] = tm.install_in_hf_cache(provenance_zoo[folder], hf_cache, repo_id)
    shas[A] = tiny_base.sha
    return shas


def verify(source: str, claims: dict, candidates: list[str], hf_cache: Path, tmp_path: Path) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    claims_path, out = tmp_path / "claims.json", tmp_path / "report.json"
    claims_path.write_text(json.dumps({"claims": [], **claims}))
    args = [source, "--claims", str(claims_path), "--benchmarks", "arc_challenge", "--limit", "2",
            "--backend", "transformers", "--json", str(out)]
    for candidate in candidates:
        args += ["--candidate", candidate]
    env = cli_env(hf_cache, tmp_path / "var", VERITY_CHECKS="provenance")
    done = subprocess.run([sys.executable, "-m", "verification", "verify", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def provenance_flags(report: dict) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["severity"]) for f in report["flags"] if f["kind"] != "score_mismatch")


@pytest.mark.slow
def test_verify_tells_sibling_bases_apart_and_reports_an_undeclared_base(zoo_repos, hf_cache, tmp_path):
    # A fine-tune of the older base A claiming the newer B (which was continued from A): flagged.
    report = verify(FT_A, {"base_model": B, "training": "full"}, [A], hf_cache, tmp_path / "older")
    assert provenance_flags(report) == [("base_model_mismatch", "critical")]
    assert report["provenance"]["weights"]["nearest"] == A
    # An honest fine-tune of B claiming B, with A known too: not flagged.
    report = verify(FT_B, {"base_model": B, "training": "full"}, [A], hf_cache, tmp_path / "newer")
    assert provenance_flags(report) == []
    assert report["provenance"]["status"] == "ok" and report["provenance"]["weights"]["nearest"] == B
    # No base claimed: the nearest known base is named and the undeclared lineage flagged.
    report = verify(FT_A, {"training": "full"}, [A, B], hf_cache, tmp_path / "none")
    assert provenance_flags(report) == [("base_model_mismatch", "warning")]
    weights = report["provenance"]["weights"]
    assert weights["verdict"] == "undeclared_base" and weights["nearest"] == A and weights["claimed"] is None
    assert report["provenance"]["claimed_base"] is None and report["model"]["claimed_base"] is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_compares_a_submission_without_a_base_with_the_registered_bases(
    zoo_repos, hf_cache, start_worker, tmp_path
):
    """The no-base case end to end: KnownBase rows (maintainers' registry) are the candidates. A
    registered base submitted as itself (B, continued from the registered A) is not flagged."""
    from leaderboard.models import KnownBase, ModelSubmission
    from tests.workers.test_pipeline_worker import FINISHED, _enqueue, _submit
    from verification.provenance import shape_signature

    for repo_id in (A, B):
        snapshot = hf_cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / zoo_repos[repo_id]
        revision = zoo_repos[repo_id] if repo_id == B else ""  # B pinned, A vouched for as a repo
        KnownBase.objects.create(repo_id=repo_id, revision=revision, shape_signature=shape_signature(snapshot))
    worker = start_worker("default,gpu", extra_env={
        "INFERENCE_BACKEND": "transformers",
        "DEFAULT_EVAL_LIMIT": "2",
        "MODEL_CACHE_DIR": str(tmp_path / "model_cache"),
        "VERITY_CHECKS": "provenance",
        "VERITY_CORE_BENCHMARKS": "none",
        "OMP_NUM_THREADS": "1",
    })
    submission = _submit(FT_A, [{"benchmark": "arc_challenge", "score": 25.0}])
    _enqueue(submission.id)
    wait_for(
        lambda: ModelSubmission.objects.filter(id=submission.id, status__in=FINISHED).exists(),
        timeout=300, interval=1, message="submission done",
    )
    submission.refresh_from_db()
    assert submission.status == ModelSubmission.Status.FLAGGED, worker.log_text()[-3000:]
    provenance = submission.report["provenance"]
    assert provenance["status"] == "ok" and provenance["weights"]["verdict"] == "undeclared_base"
    assert provenance["weights"]["nearest"] == A
    assert {c["name"] for c in provenance["weights"]["candidates"]} == {A, B}
    flags = [(f.kind, f.severity) for f in submission.flags.all()]
    assert ("base_model_mismatch", "warning") in flags

    registered = _submit(B, [{"benchmark": "arc_challenge", "score": 25.0}])
    _enqueue(registered.id)
    wait_for(
        lambda: ModelSubmission.objects.filter(id=registered.id, status__in=FINISHED).exists(),
        timeout=300, interval=1, message="registered base done",
    )
    registered.refresh_from_db()
    provenance = registered.report["provenance"]
    assert provenance["status"] == "ok" and provenance["weights"]["verdict"] == "registered_base", worker.log_text()[-3000:]
    assert provenance["registered_as"] == B and provenance["weights"]["nearest"] == A
    assert {c["name"] for c in provenance["weights"]["candidates"]} == {A}  # never compared with itself
    assert [(f.kind, f.severity) for f in registered.flags.filter(kind="base_model_mismatch")] == [
        ("base_model_mismatch", "info")
    ]
