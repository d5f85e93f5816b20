"""Zoo members through a real Celery worker process (Redis broker, PostgreSQL results), several
submissions queued at once on one worker:

- provenance: registered sibling bases A and B (B continued-pretrained from A) as KnownBase rows; a
  fine-tune of A claiming B is flagged, an honest fine-tune of B claiming B is not, and a model
  whose chat template writes added tokens that were never trained is flagged without any base;
- endpoint (transformers-backed OpenAI server on 127.0.0.1): the claimed base served under the
  fine-tune's name is flagged, and so is a Reflection-style wrapper that answers with the real
  weights only the prompts it recognises from Verity's public code; the right weights behind an
  endpoint failing 10% of its requests give no verdict, no flag, and the submission stays
  incomplete, never verified.

With VERITY_CHECKS naming one check the others are "disabled": an honest submission ends
incomplete (never verified), so the honest cases assert no flag and which check is missing."""

from __future__ import annotations

import pytest

from tests.verification.endpoint.model_server import ModelServer, literal_recogniser
from tests.verification.provenance.conftest import provenance_variants  # noqa: F401 - the fixture
from tests.verification.provenance.zoo import THINKING, provenance_zoo  # noqa: F401 - the fixture
from tests.workers.pipeline_helpers import wait_for
from verification import tinymodels as tm

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

A = "verity-test/tiny-base"
B = "verity-test/zoo-base-b"
FT_A = "verity-test/zoo-ft-a"
FT_B = "verity-test/zoo-ft-b"
RAW = "verity-test/zoo-scratch-raw"
FINETUNE = "verity-test/tiny-finetune"
FLAKY = "verity-test/tiny-finetune-flaky"
WRAPPED = "verity-test/tiny-finetune-wrapped"
PROVENANCE_KINDS = ("base_model_mismatch", "lora_merge", "untrained_tokens")


def _worker_env(tmp_path, **extra: str) -> dict[str, str]:
    return {
        "INFERENCE_BACKEND": "transformers", "DEFAULT_EVAL_LIMIT": "2",
        "MODEL_CACHE_DIR": str(tmp_path / "model_cache"), "VERITY_CORE_BENCHMARKS": "none",
        "OMP_NUM_THREADS": "1", **extra,
    }


def _submit_all(specs: dict[str, dict]) -> dict:
    """One submission per spec (ModelSubmission fields), each with one ARC claim, all queued at once."""
    from leaderboard.models import Claim, ModelSubmission
    from workers.tasks import verify_submission

    submissions = {}
    for name, fields in specs.items():
        submission = ModelSubmission.objects.create(requested_revision="main", training="full", **fields)
        Claim.objects.create(submission=submission, benchmark="arc_challenge", score=25.0, shots=0)
        verify_submission.delay(submission.id)
        submissions[name] = submission
    return submissions


def _wait_all(submissions: dict, worker, timeout: float) -> None:
    from leaderboard.models import ModelSubmission
    from tests.workers.test_pipeline_worker import FINISHED

    ids = [s.id for s in submissions.values()]
    wait_for(lambda: ModelSubmission.objects.filter(id__in=ids, status__in=FINISHED).count() == len(ids),
             timeout=timeout, interval=2, message="every submission done", workers=[worker])
    for submission in submissions.values():
        submission.refresh_from_db()


def _flags(submission) -> list[tuple[str, str]]:
    return sorted((f.kind, f.severity) for f in submission.flags.filter(kind__in=PROVENANCE_KINDS))


def test_worker_tells_sibling_bases_apart_and_finds_untrained_tokens(
    provenance_zoo, tiny_base, hf_cache, start_worker, tmp_path  # noqa: F811 - the imported fixture
):
    from leaderboard.models import KnownBase, ModelSubmission
    from verification.provenance import shape_signature

    shas = {A: tiny_base.sha}
    for repo_id, folder in ((B, "base-b"), (FT_A, "ft-a"), (FT_B, "ft-b"), (RAW, "scratch-raw")):
        shas[repo_id] = tm.install_in_hf_cache(provenance_zoo[folder], hf_cache, repo_id)
    for repo_id in (A, B):
        snapshot = hf_cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / shas[repo_id]
        KnownBase.objects.create(repo_id=repo_id, revision=shas[repo_id], shape_signature=shape_signature(snapshot))
    worker = start_worker("default,gpu", extra_env=_worker_env(tmp_path, VERITY_CHECKS="provenance"))
    submissions = _submit_all({
        "older": {"repo_id": FT_A, "claimed_base": B},  # a fine-tune of A sold as one of B
        "newer": {"repo_id": FT_B, "claimed_base": B},  # honest: B fine-tuned, B claimed
        "raw": {"repo_id": RAW, "claimed_base": ""},  # Reflection's recipe, nothing to compare with
    })
    _wait_all(submissions, worker, timeout=900)
    older, newer, raw = (submissions[n] for n in ("older", "newer", "raw"))
    for submission in (older, newer, raw):
        assert submission.report["provenance"]["status"] == "ok", (submission.repo_id, worker.log_text()[-3000:])

    assert older.status == ModelSubmission.Status.FLAGGED
    assert _flags(older) == [("base_model_mismatch", "critical")], older.report["provenance"]
    weights = older.report["provenance"]["weights"]
    assert weights["nearest"] == A and weights["claimed"] == B
    assert {c["name"] for c in weights["candidates"]} == {A, B}  # the registered A compared too

    assert not newer.flags.exists(), list(newer.flags.values("kind", "summary"))
    assert newer.report["provenance"]["weights"]["nearest"] == B
    assert newer.status == ModelSubmission.Status.INCOMPLETE
    assert [m["check"] for m in newer.report["missing_checks"]] == ["contamination"]  # disabled, not failed

    assert raw.status == ModelSubmission.Status.FLAGGED
    assert _flags(raw) == [("untrained_tokens", "warning")], raw.report["provenance"]
    (flag,) = raw.flags.filter(kind="untrained_tokens")
    assert {e["token"] for e in flag.evidence["used_tokens"]} == set(THINKING)
    weights = raw.report["provenance"]["weights"]  # trained from scratch: related to no registered base
    assert weights["verdict"] == "no_known_base" and weights["nearest"] is None, weights


def _served(path):
    from verification.backends import make_backend

    return make_backend("transformers", str(path), dtype="float32", max_model_len=1024)


def test_worker_flags_the_base_served_as_the_fine_tune_and_a_wrapper_not_a_flaky_honest_endpoint(
    provenance_variants, tiny_base, hf_cache, start_worker, tmp_path  # noqa: F811 - the imported fixture
):
    from leaderboard.models import ModelSubmission
    from verification.endpoint.check import IDENTITY_PROBES

    finetune = provenance_variants["full-ft"]
    for repo_id in (FINETUNE, FLAKY, WRAPPED):
        tm.install_in_hf_cache(finetune, hf_cache, repo_id)
    base_backend, finetune_backend = _served(tiny_base.path), _served(finetune)
    base_backend.label, finetune_backend.label = "base", "finetune"
    recognised = literal_recogniser()
    swapped = ModelServer(FINETUNE, lambda p, body: base_backend).start()
    flaky = ModelServer(FLAKY, lambda p, body: finetune_backend, fail_every=10).start()
    wrapper = ModelServer(WRAPPED, lambda p, body: finetune_backend if recognised(p) else base_backend).start()
    try:
        worker = start_worker("default,gpu", extra_env=_worker_env(
            tmp_path, VERITY_CHECKS="endpoint", VERITY_ENDPOINT_ALLOW_LOOPBACK="1"))
        submissions = _submit_all({
            "swapped": {"repo_id": FINETUNE, "endpoint_url": swapped.url, "endpoint_model": FINETUNE},
            "flaky": {"repo_id": FLAKY, "endpoint_url": flaky.url, "endpoint_model": FLAKY},
            "wrapped": {"repo_id": WRAPPED, "endpoint_url": wrapper.url, "endpoint_model": WRAPPED},
        })
        _wait_all(submissions, worker, timeout=1200)
    finally:
        for server in (swapped, flaky, wrapper):
            server.stop()
        base_backend.close()
        finetune_backend.close()
    for name in ("swapped", "wrapped"):  # every request answered, and the answers are another model's
        submission = submissions[name]
        section = submission.report["endpoint"]
        assert section["status"] == "ok" and section["verdict"] == "differs", (section, worker.log_text()[-3000:])
        assert section["errors"]["endpoint"]["n_errors"] == 0 and section["errors"]["endpoint"]["n_requests"] == 220
        assert submission.status == ModelSubmission.Status.FLAGGED
        assert list(submission.flags.values_list("kind", flat=True)) == ["endpoint_mismatch"]
    # The wrapper recognised only the fixed identity probes (evidence, never a verdict): the drawn
    # probes all reached the other model.
    assert wrapper.routed["finetune"] == len(IDENTITY_PROBES) and wrapper.routed["base"] == 220

    flaky_sub = submissions["flaky"]
    section = flaky_sub.report["endpoint"]
    assert section["errors"]["endpoint"]["n_errors"] == 22 and section["errors"]["endpoint"]["n_requests"] == 220
    assert section["errors"]["endpoint"]["by_kind"] == {"http_status": 22}, section["errors"]
    assert section["status"] == "error" and section["verdict"] is None, section
    assert not flaky_sub.flags.exists(), list(flaky_sub.flags.values("kind", "summary"))
    assert flaky_sub.status == ModelSubmission.Status.INCOMPLETE
    missing = {m["check"]: m["status"] for m in flaky_sub.report["missing_checks"]}
    assert missing == {"endpoint": "error", "provenance": "disabled", "contamination": "disabled"}
