"""Creating submissions: every check a submission must pass, and the one function that writes it.

The web form and the JSON API both call `do_create_submission`; each `check_*` raises
`SubmissionError` naming the field at fault, so a bad submission writes nothing and the caller can
show the message next to the right input. The claims themselves are validated by
`verification.claims.parse_claims`, the same validator the `verify` command uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from leaderboard.models import Claim, ModelSubmission
from verification.claims import ClaimsDoc, ClaimsError, claimable_benchmarks, is_repo_id, parse_claims

log = logging.getLogger(__name__)

PENDING_STATUSES = (
    ModelSubmission.Status.RECEIVED,
    ModelSubmission.Status.QUEUED,
    ModelSubmission.Status.RUNNING,
)
MAX_REVISION_LENGTH = 255


class SubmissionError(ValueError):
    """A submission that cannot be accepted. `field` names the input at fault ("" = the whole
    submission), so forms and the API can point at it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ValidatedSubmission:
    repo_id: str
    revision: str
    sha: str
    claims: ClaimsDoc


def check_repo_id(repo_id: Any) -> str:
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise SubmissionError("repo_id", "Give the model's Hugging Face repo id, like 'org/name'.")
    repo_id = repo_id.strip()
    if not is_repo_id(repo_id):
        raise SubmissionError(
            "repo_id",
            f"{repo_id!r} is not a valid Hugging Face repo id: expected 'org/name' with letters, digits, "
            "'-', '_' or '.', no '--' or '..'.",
        )
    return repo_id


def check_revision(revision: Any) -> str:
    if revision is None or revision == "":
        return "main"
    if not isinstance(revision, str) or not revision.strip():
        raise SubmissionError("revision", "The revision must be a branch, tag or commit sha.")
    revision = revision.strip()
    if len(revision) > MAX_REVISION_LENGTH or any(ch.isspace() for ch in revision) or ".." in revision:
        raise SubmissionError("revision", f"{revision[:60]!r} is not a valid branch, tag or commit sha.")
    return revision


def check_claims(document: Any) -> ClaimsDoc:
    try:
        doc = parse_claims(document)  # only claimable benchmarks are accepted
    except ClaimsError as exc:
        raise SubmissionError("claims", str(exc)) from None
    if not doc.claims:
        raise SubmissionError("claims", "Claim at least one benchmark score: Verity re-measures what you claim.")
    return doc


def check_pinned_sha(repo_id: str, revision: str) -> str:
    """Pin the revision to a commit now, so a duplicate is recognised by sha and the author sees
    a missing repo or revision immediately (offline: through the local HF cache)."""
    from verification.intake import IntakeRefused, TransientHubError, resolve_revision

    try:
        return resolve_revision(repo_id, revision)
    except IntakeRefused as exc:
        field = "revision" if exc.code == "revision_not_found" else "repo_id"
        raise SubmissionError(field, exc.reason) from None
    except TransientHubError as exc:
        raise SubmissionError("repo_id", f"The Hugging Face Hub cannot be reached now; try again later ({exc}).") from None


def check_not_duplicate(repo_id: str, sha: str) -> None:
    pending = ModelSubmission.objects.filter(repo_id=repo_id, pinned_sha=sha, status__in=PENDING_STATUSES)
    existing = pending.values_list("id", flat=True).first()
    if existing is not None:
        raise SubmissionError(
            "revision",
            f"{repo_id}@{sha[:12]} is already waiting for verification (submission #{existing}); "
            "follow that run instead of submitting it again.",
        )


def check_rate_limit(user: Any) -> None:
    limit = settings.SUBMISSIONS_PER_DAY
    since = timezone.now() - timedelta(days=1)
    recent = ModelSubmission.objects.filter(submitter=user, created_at__gte=since).count()
    if recent >= limit:
        raise SubmissionError(
            "", f"You have made {recent} submissions in the last 24 hours; the limit is {limit} per day."
        )


def check_author(user: Any, submission: ModelSubmission) -> None:
    """Only a submission's author may change it or answer on its behalf."""
    if not getattr(user, "is_authenticated", False) or submission.submitter_id != user.pk:
        raise PermissionError("Only the author of this submission can do that.")


def claims_document(data: dict[str, Any]) -> dict[str, Any]:
    """The claims-file part of a submission payload (repo and revision removed)."""
    return {key: value for key, value in data.items() if key not in {"repo_id", "revision"}}


def validate_submission(user: Any, data: dict[str, Any]) -> ValidatedSubmission:
    """Every check, cheapest first; the Hub/cache lookup only for an otherwise valid submission."""
    if not isinstance(data, dict):
        raise SubmissionError("", "A submission must be an object with repo_id, revision and claims.")
    repo_id = check_repo_id(data.get("repo_id"))
    revision = check_revision(data.get("revision"))
    claims = check_claims(claims_document(data))
    check_rate_limit(user)
    sha = check_pinned_sha(repo_id, revision)
    check_not_duplicate(repo_id, sha)
    return ValidatedSubmission(repo_id=repo_id, revision=revision, sha=sha, claims=claims)


def do_create_submission(user: Any, data: dict[str, Any]) -> ModelSubmission:
    """Validate and store a submission with its claims in one transaction, then queue its
    verification once the rows are committed (so the worker never looks for a missing row)."""
    validated = validate_submission(user, data)
    with transaction.atomic():
        # Serialise one user's concurrent submissions so the rate limit and the duplicate check
        # hold under double-clicks and parallel API calls.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        check_rate_limit(user)
        check_not_duplicate(validated.repo_id, validated.sha)
        submission = _insert(user, validated)
        transaction.on_commit(lambda: enqueue_verification(submission.pk))
    return submission


def _insert(user: Any, validated: ValidatedSubmission) -> ModelSubmission:
    doc = validated.claims
    submission = ModelSubmission.objects.create(
        repo_id=validated.repo_id,
        requested_revision=validated.revision,
        pinned_sha=validated.sha,
        submitter=user,
        claimed_base=doc.base_model or "",
        training=doc.training,
        endpoint_url=doc.endpoint or "",
        endpoint_model=doc.endpoint_model or "",
        status=ModelSubmission.Status.RECEIVED,
    )
    Claim.objects.bulk_create(
        Claim(
            submission=submission,
            benchmark=claim.benchmark,
            score=claim.score,
            shots=claim.shots,
            cot=claim.cot,
            chat_template=claim.chat_template,
            source_url=claim.source_url,
        )
        for claim in doc.claims
    )
    return submission


def enqueue_verification(submission_id: int) -> None:
    from workers.tasks import verify_submission

    try:
        verify_submission.delay(submission_id)
    except Exception:  # the broker is down: the row stays "received" and can be re-queued
        log.exception("could not queue verification of submission %s", submission_id)


# --- claims offered from the model card ---------------------------------------------------------

# Hub dataset ids (model-index `dataset.type`, `.eval_results` `dataset.id`) -> Verity slugs.
HUB_DATASET_SLUGS: dict[str, str] = {
    "gsm8k": "gsm8k",
    "openai/gsm8k": "gsm8k",
    "mmlu": "mmlu",
    "cais/mmlu": "mmlu",
    "hendrycks_test": "mmlu",
    "ai2_arc": "arc_challenge",
    "allenai/ai2_arc": "arc_challenge",
    "arc_challenge": "arc_challenge",
    "truthful_qa": "truthfulqa_mc1",
    "truthfulqa/truthful_qa": "truthfulqa_mc1",
    "math500": "math500",
    "huggingfaceh4/math-500": "math500",
    "hendrycks/competition_math": "math",
    "competition_math": "math",
    "openai_humaneval": "humaneval",
    "openai/openai_humaneval": "humaneval",
    "ifeval": "ifeval",
    "google/ifeval": "ifeval",
}


@dataclass(frozen=True)
class CardClaim:
    benchmark: str
    score: float
    source: str  # "model-index" or ".eval_results/<file>"


def _as_points(value: Any) -> float | None:
    """Cards mix fractions (0.853) and points (85.3); a value at most 1 is read as a fraction.
    The author confirms every offered score before submitting."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(str(value).strip().rstrip("%"))
        except ValueError:
            return None
    value = float(value)
    if not 0 <= value <= 100:
        return None
    return round(value * 100, 4) if value <= 1 else value


def _slug_for(dataset_id: str | None, task: str | None = None) -> str | None:
    if not dataset_id:
        return None
    slug = HUB_DATASET_SLUGS.get(dataset_id.strip().lower())
    if slug == "arc_challenge" and task and "easy" in task.lower():
        return None  # ARC-Easy is not ARC-Challenge
    return slug


def _snapshot_dir(repo_id: str, sha: str) -> Path | None:
    from verification.sources import hub_cache_dir

    path = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots" / sha
    return path if path.is_dir() else None


def _model_index_claims(card_path: Path) -> list[CardClaim]:
    from huggingface_hub import ModelCard

    card = ModelCard.load(card_path, ignore_metadata_errors=True)
    results = getattr(card.data, "eval_results", None) or []
    found = []
    for result in results:
        slug = _slug_for(result.dataset_type, result.dataset_config or result.dataset_name)
        score = _as_points(result.metric_value)
        if slug and score is not None:
            found.append(CardClaim(slug, score, "model-index"))
    return found


def _eval_results_claims(files: list[Path]) -> list[CardClaim]:
    import yaml
    from huggingface_hub import parse_eval_result_entries

    found = []
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            entries = parse_eval_result_entries(data if isinstance(data, list) else [data])
        except Exception:  # a hostile or malformed file is skipped, never trusted
            log.info("skipping unreadable eval results file %s", path)
            continue
        for entry in entries:
            slug = _slug_for(entry.dataset_id, entry.task_id)
            score = _as_points(entry.value)
            if slug and score is not None:
                found.append(CardClaim(slug, score, f".eval_results/{path.name}"))
    return found


def card_claims(repo_id: str, revision: str = "main") -> list[CardClaim]:
    """Scores the repo itself states (README model-index, `.eval_results/*.yaml`), offered to the
    author as claims. Read through the local HF cache when offline, through the Hub otherwise;
    any failure just offers nothing."""
    from huggingface_hub import hf_hub_download, list_repo_files

    from verification.sources import hub_offline

    repo_id = check_repo_id(repo_id)
    revision = check_revision(revision)
    try:
        sha = check_pinned_sha(repo_id, revision)
    except SubmissionError:
        return []
    try:
        snapshot = _snapshot_dir(repo_id, sha)
        if hub_offline() or snapshot is not None:
            if snapshot is None:
                return []
            readme = snapshot / "README.md"
            yaml_files = sorted((snapshot / ".eval_results").glob("*.yaml"))
        else:
            names = list_repo_files(repo_id, revision=sha)
            readme = hf_hub_download(repo_id, "README.md", revision=sha) if "README.md" in names else None
            yaml_files = [
                Path(hf_hub_download(repo_id, name, revision=sha))
                for name in names
                if name.startswith(".eval_results/") and name.endswith(".yaml")
            ]
        found = _eval_results_claims(yaml_files)
        if readme is not None and Path(readme).is_file():
            found += _model_index_claims(readme)
    except Exception:
        log.info("could not read claims from the card of %s@%s", repo_id, revision, exc_info=True)
        return []
    by_slug: dict[str, CardClaim] = {}
    for claim in found:  # .eval_results first: it is the Hub's current format
        by_slug.setdefault(claim.benchmark, claim)
    known = set(claimable_benchmarks())
    return [claim for slug, claim in sorted(by_slug.items()) if slug in known]
