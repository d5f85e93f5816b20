"""Rows for the site's tests: published submissions with runs, results, samples and flags, built
through the real models and the real leaderboard service (no fake rows the service would not
write), and small repos in the real HF cache layout for the submission checks."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.utils import timezone

from leaderboard.models import (
    BenchmarkResult,
    Claim,
    EvaluationRun,
    Flag,
    LeaderboardEntry,
    ModelSubmission,
    SampleResult,
)
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry
from verification import tinymodels as tm
from verification.stats import wilson_interval

CARD_WITH_MODEL_INDEX = """---
license: mit
model-index:
- name: card-model
  results:
  - task: {type: text-generation}
    dataset: {name: MMLU, type: cais/mmlu}
    metrics:
    - {type: acc, value: 0.612}
  - task: {type: text-generation}
    dataset: {name: Unknown, type: someone/unknown-bench}
    metrics:
    - {type: acc, value: 50.0}
---
# card-model
"""

EVAL_RESULTS_GSM8K = """- dataset:
    id: openai/gsm8k
    task_id: main
  value: 71.5
"""


def install_card_repo(hf_cache: Path, work_dir: Path, repo_id: str, *, readme: str = CARD_WITH_MODEL_INDEX,
                      eval_results: str | None = EVAL_RESULTS_GSM8K, marker: str = "",
                      owner_token: str | None = None, extra: dict[str, str | bytes] | None = None) -> str:
    """A small repository (config + card + optional .eval_results) in the real HF cache layout;
    enough for intake's offline pinning and the card-claims reader. With `owner_token`, the repo
    holds it as .verity/owner-token (its owner proving control for that Verity account); `extra`
    adds files ({path: content}). Returns its sha."""
    folder = work_dir / repo_id.replace("/", "--") / (marker or "v1")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "marker": marker}))
    (folder / "README.md").write_text(readme)
    if eval_results is not None:
        (folder / ".eval_results").mkdir(exist_ok=True)
        (folder / ".eval_results" / "gsm8k.yaml").write_text(eval_results)
    files = dict(extra or {})
    if owner_token is not None:
        files[".verity/owner-token"] = owner_token + "\n"
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return tm.install_in_hf_cache(folder, hf_cache, repo_id)


def _sha(seed: str) -> str:
    import hashlib

    return hashlib.sha1(seed.encode()).hexdigest()


def make_result(run: EvaluationRun, benchmark: str, correct: int, n: int, *, claimed: float | None = None,
                verdict: str = "unclaimed", private: bool = False, setup: dict | None = None,
                z: float | None = None) -> BenchmarkResult:
    low, high = wilson_interval(correct, n)
    measured = 100 * correct / n
    setup = setup or {"shots": 0, "cot": False, "chat_template": False}
    return BenchmarkResult.objects.create(
        run=run, benchmark=benchmark, benchmark_version="1", setup=setup,
        setup_key=json.dumps(setup, sort_keys=True, separators=(",", ":")), private=private,
        measured=measured, ci_low=min(100 * low, measured), ci_high=max(100 * high, measured), n=n,
        claimed=claimed, z=z, verdict=verdict,
    )


def publish(repo_id: str, scores: dict[str, tuple[int, int]], *, claims: dict[str, float] | None = None,
            verdicts: dict[str, str] | None = None, user: Any = None, base: str = "",
            intake: dict | None = None, status: str = ModelSubmission.Status.VERIFIED,
            samples: dict[str, list[dict]] | None = None, private: tuple[str, ...] = (),
            created_offset_s: int = 0, kind: str = ModelSubmission.Kind.AUTHOR) -> ModelSubmission:
    """A verified submission with one finished run; `scores` = {slug: (correct, n)}."""
    claims = claims or {}
    verdicts = verdicts or {}
    submission = ModelSubmission.objects.create(
        repo_id=repo_id, requested_revision="main", pinned_sha=_sha(repo_id + str(created_offset_s)),
        submitter=user, claimed_base=base, status=status, kind=kind,
        intake=intake if intake is not None else {"parameters": 6_000_000, "license": "apache-2.0"},
        finished_at=timezone.now(),
    )
    if created_offset_s:
        ModelSubmission.objects.filter(pk=submission.pk).update(
            created_at=timezone.now() + timedelta(seconds=created_offset_s)
        )
        submission.refresh_from_db()
    Claim.objects.bulk_create(Claim(submission=submission, benchmark=b, score=s) for b, s in claims.items())
    run = EvaluationRun.objects.create(
        submission=submission, model_repo=repo_id, model_sha=submission.pinned_sha, backend="transformers",
        status=EvaluationRun.Status.DONE, limit=10,
        benchmarks=[{"slug": slug, "setup": {}, "limit": n} for slug, (_, n) in scores.items()],
        progress_done=sum(n for _, n in scores.values()), progress_total=sum(n for _, n in scores.values()),
        started_at=timezone.now(), finished_at=timezone.now(),
        log=[{"at": timezone.now().isoformat(), "step": "published"}],
    )
    for slug, (correct, n) in scores.items():
        make_result(run, slug, correct, n, claimed=claims.get(slug), verdict=verdicts.get(slug, "consistent"
                    if slug in claims else "unclaimed"), private=slug in private)
    for slug, rows in (samples or {}).items():
        SampleResult.objects.bulk_create(
            SampleResult(run=run, benchmark=slug, setup_key='{"chat_template":false,"cot":false,"shots":0}',
                         index=i, **row)
            for i, row in enumerate(rows)
        )
    do_refresh_leaderboard_entry(submission)
    return submission


def measure(submission: ModelSubmission, scores: dict[str, tuple[int, int]],
            verdicts: dict[str, str] | None = None) -> EvaluationRun:
    """What the pipeline leaves behind for an existing submission (one finished run, its results
    judged against the submission's claims, the submission verified), then the leaderboard
    service the pipeline calls on publishing."""
    claims = {c.benchmark: c.score for c in submission.claims.all()}
    run = EvaluationRun.objects.create(
        submission=submission, model_repo=submission.repo_id, model_sha=submission.pinned_sha or _sha(submission.repo_id),
        backend="transformers", status=EvaluationRun.Status.DONE, limit=10,
        benchmarks=[{"slug": slug, "setup": {}, "limit": n} for slug, (_, n) in scores.items()],
        started_at=timezone.now(), finished_at=timezone.now(),
    )
    for slug, (correct, n) in scores.items():
        make_result(run, slug, correct, n, claimed=claims.get(slug),
                    verdict=(verdicts or {}).get(slug, "consistent" if slug in claims else "unclaimed"))
    ModelSubmission.objects.filter(pk=submission.pk).update(status=ModelSubmission.Status.VERIFIED,
                                                            finished_at=timezone.now())
    do_refresh_leaderboard_entry(submission)
    return run


def flag(submission: ModelSubmission, *, kind: str = Flag.Kind.SCORE_MISMATCH, severity: str = "critical",
         status: str = Flag.Status.OPEN, reason: str = "", benchmark: str = "gsm8k") -> Flag:
    created = Flag.objects.create(
        submission=submission, kind=kind, severity=severity, benchmark=benchmark,
        summary=f"{benchmark}: claimed far above the measurement", evidence={"z": 7.1, "claimed": 99.0},
        status=status, decision_reason=reason,
    )
    do_refresh_leaderboard_entry(submission)
    return created


def entry(repo_id: str) -> LeaderboardEntry:
    return LeaderboardEntry.objects.get(repo_id=repo_id)


def card_claims_page(client, query: str, timeout: float = 15.0) -> str:
    """The submit form's card-claims partial for `query`, once the background read has answered
    (it answers 202 "still reading" until then, and the page polls, as this does)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/submit/card-claims?{query}")
        if response.status_code != 202 or time.monotonic() > deadline:
            return response.content.decode()
        time.sleep(0.2)
