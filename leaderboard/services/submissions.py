"""Creating submissions: every check a submission must pass, and the one function that writes it.

The web form and the JSON API both call `do_create_submission`; each `check_*` raises
`SubmissionError` naming the field at fault, so a bad submission writes nothing and the caller can
show the message next to the right input. The claims themselves are validated by
`verification.claims.parse_claims`, the same validator the `verify` command uses.

An author submission needs proof of control of the repo (leaderboard.services.ownership); a
community verification does not, and is shown apart. Every submission counts against the quotas
(leaderboard.services.quotas): per account, per client address, and the global budget of
GPU-hours in flight.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from leaderboard.models import Claim, ModelSubmission
from leaderboard.services import hub, ownership, quotas
from leaderboard.services.public_text import scrub_internal
from verification.claims import ClaimsDoc, ClaimsError, is_repo_id, parse_claims
from verification.endpoint.urlcheck import EndpointURLError, blocked_hostports_from_urls, validate_endpoint_url
from verification.intake import IntakeRefused, TransientHubError
from workers.celery_app import send
from workers.liveness import cancel_submission

log = logging.getLogger(__name__)

PENDING_STATUSES = (
    ModelSubmission.Status.RECEIVED,
    ModelSubmission.Status.QUEUED,
    ModelSubmission.Status.RUNNING,
)
MAX_REVISION_LENGTH = 255
MAX_API_KEY_LENGTH = 500
# Keys of a submission payload that are not part of the claims document.
SUBMISSION_KEYS = {"repo_id", "revision", "kind", "endpoint_api_key"}
# Serialises the global queue-budget check across processes (PostgreSQL advisory lock id).
_BUDGET_LOCK = 0x7E717


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
    kind: str = ModelSubmission.Kind.AUTHOR
    owner_proof: dict | None = None
    endpoint_api_key: str = ""
    gpu_hours: float = 0.0
    client_ip: str | None = None


# --- the payload's shape ------------------------------------------------------------------------

# JSON types of the payload's values (None = absent or null is fine), checked before any value is
# read, so a wrong type is a clear 400 and never an exception deeper in.
_TOP_TYPES: dict[str, tuple[type, ...]] = {
    "repo_id": (str,), "revision": (str,), "kind": (str,), "base_model": (str,), "training": (str,),
    "endpoint": (str,), "endpoint_model": (str,), "endpoint_api_key": (str,), "claims": (list,),
}
_CLAIM_TYPES: dict[str, tuple[type, ...]] = {
    "benchmark": (str,), "score": (int, float), "shots": (int,), "cot": (bool,), "chat_template": (bool,),
    "source_url": (str,),
}
_TYPE_WORDS = {str: "a string", list: "a list", int: "a number", float: "a number", bool: "true or false"}


def _check_value(where: str, value: Any, types: tuple[type, ...]) -> None:
    if value is None:
        return
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        expected = "a whole number" if types == (int,) else " or ".join(dict.fromkeys(_TYPE_WORDS[t] for t in types))
        raise SubmissionError(_field_of(where), f"{where} must be {expected}, got {type(value).__name__}")
    if isinstance(value, str) and any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise SubmissionError(_field_of(where), f"{where} contains control characters")
    if float in types and not isinstance(value, bool):
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        if not finite:
            raise SubmissionError(_field_of(where), f"{where} is not a finite number of points (0–100)")


def _field_of(where: str) -> str:
    top = where.split("[", 1)[0].split(".", 1)[0]
    return top if top in {"repo_id", "revision", "kind", "endpoint_api_key"} else "claims"


def check_payload_types(data: dict[str, Any]) -> None:
    """Every known value has its JSON type, no string holds control characters, no number is
    infinite or too large for a float (unknown keys are the claims validator's to name)."""
    for key, types in _TOP_TYPES.items():
        _check_value(key, data.get(key), types)
    for position, claim in enumerate(data.get("claims") or []):
        if not isinstance(claim, dict):
            raise SubmissionError("claims", f"claims[{position}] must be an object, got {type(claim).__name__}")
        for key, types in _CLAIM_TYPES.items():
            _check_value(f"claims[{position}].{key}", claim.get(key), types)


# --- each check ------------------------------------------------------------------------------------


def check_repo_id(repo_id: Any) -> str:
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise SubmissionError("repo_id", "Give the model's Hugging Face repo id, like 'org/name'.")
    repo_id = repo_id.strip()
    if not is_repo_id(repo_id):
        raise SubmissionError(
            "repo_id",
            f"{repo_id[:200]!r} is not a valid Hugging Face repo id: expected 'org/name' with letters, digits, "
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


def check_kind(kind: Any) -> str:
    if kind is None or kind == "":
        return ModelSubmission.Kind.AUTHOR
    if kind not in ModelSubmission.Kind.values:
        raise SubmissionError("kind", f"kind must be one of {', '.join(ModelSubmission.Kind.values)}, got {kind!r}.")
    return kind


def check_claims(document: Any) -> ClaimsDoc:
    try:
        doc = parse_claims(document)  # only claimable benchmarks are accepted
    except ClaimsError as exc:
        raise SubmissionError("claims", str(exc)) from None
    if not doc.claims:
        raise SubmissionError("claims", "Claim at least one benchmark score: Verity re-measures what you claim.")
    return doc


def check_endpoint(doc: ClaimsDoc) -> ClaimsDoc:
    """The endpoint URL as it may be stored and shown: no credentials (they go in the separate
    secret field), no internal or metadata host, nothing but http(s)."""
    if not doc.endpoint:
        return doc
    blocked = blocked_hostports_from_urls([settings.DATABASE_URL, settings.REDIS_URL])
    try:
        clean = validate_endpoint_url(doc.endpoint, allow_loopback=settings.ENDPOINT_ALLOW_LOOPBACK,
                                      blocked_hostports=blocked)
    except EndpointURLError as exc:
        hint = " Give the endpoint's API key in its own field (endpoint_api_key)." if "credentials" in str(exc) else ""
        raise SubmissionError("claims", f"'endpoint': {exc}.{hint}") from None
    return replace(doc, endpoint=clean)


def check_endpoint_api_key(key: Any) -> str:
    if key is None or key == "":
        return ""
    if not isinstance(key, str) or len(key) > MAX_API_KEY_LENGTH or any(ch.isspace() for ch in key.strip()):
        raise SubmissionError("endpoint_api_key", f"The endpoint API key must be one word of at most {MAX_API_KEY_LENGTH} characters.")
    return key.strip()


def check_repo(repo_id: str, revision: str) -> hub.RepoAtSha:
    """Pin the revision to a commit now, so a duplicate is recognised by sha and the author sees
    a missing repo or revision immediately (offline: through the local HF cache)."""
    try:
        return hub.repo_at(repo_id, revision)
    except IntakeRefused as exc:
        field = "revision" if exc.code == "revision_not_found" else "repo_id"
        raise SubmissionError(field, scrub_internal(exc.reason)) from None
    except TransientHubError as exc:
        raise SubmissionError("repo_id", f"The Hugging Face Hub cannot be reached now; try again later ({scrub_internal(str(exc))}).") from None


def check_owner(user: Any, repo: hub.RepoAtSha) -> dict:
    """Proof that `user` controls the repo, for an author submission (see services.ownership)."""
    proof = ownership.ownership_proof(user, repo)
    if proof is None:
        namespace = ownership.namespace_of(repo.repo_id)
        raise SubmissionError(
            "repo_id",
            f"You have not shown that you control {repo.repo_id}. An author submission needs either a Hugging "
            f"Face sign-in with the account {namespace!r} or a member of that organisation, or the file "
            f"{ownership.OWNER_TOKEN_FILE} at this revision holding your owner token (see /accounts/owner-token/). "
            "Anyone may instead request a community verification of a public model.",
        )
    return proof


def check_not_duplicate(repo_id: str, sha: str, kind: str = ModelSubmission.Kind.AUTHOR) -> None:
    pending = ModelSubmission.objects.filter(repo_id=repo_id, pinned_sha=sha, kind=kind, status__in=PENDING_STATUSES)
    existing = pending.values_list("id", flat=True).first()
    if existing is not None:
        raise SubmissionError(
            "revision",
            f"{repo_id}@{sha[:12]} is already waiting for verification (submission #{existing}); "
            "follow that run instead of submitting it again.",
        )


def check_rate_limit(user: Any) -> None:
    _check_daily_limit(
        ModelSubmission.objects.filter(submitter=user), settings.SUBMISSIONS_PER_DAY,
        "You have made {recent} submissions in the last 24 hours; the limit is {limit} per day.",
    )


def check_ip_limit(client_ip: str | None) -> None:
    if client_ip:
        _check_daily_limit(
            ModelSubmission.objects.filter(submitter_ip=client_ip), settings.SUBMISSIONS_PER_IP_PER_DAY,
            "{recent} submissions came from your address in the last 24 hours; the limit is {limit} per day.",
        )


def _check_daily_limit(submissions: Any, limit: int, message: str) -> None:
    recent = submissions.filter(created_at__gte=timezone.now() - timedelta(days=1)).count()
    if recent >= limit:
        raise SubmissionError("", message.format(recent=recent, limit=limit))


def check_base(base_model: str | None) -> int:
    """The claimed base's size in bytes (0 when there is none or the Hub does not know it: then
    the pipeline reports the missing base); a base over settings.MAX_BASE_BYTES is refused, since
    it is measured as a second model."""
    if not base_model:
        return 0
    try:
        base = hub.repo_at(base_model, "main")
    except IntakeRefused:
        return 0
    except TransientHubError:
        raise SubmissionError("base_model", "The Hugging Face Hub cannot be reached now to size the claimed base; try again later.") from None
    if base.total_bytes > settings.MAX_BASE_BYTES:
        raise SubmissionError(
            "base_model",
            f"The claimed base {base_model} is {base.total_bytes / 1024**3:.1f} GiB; Verity measures claimed bases "
            f"up to {settings.MAX_BASE_BYTES / 1024**3:.1f} GiB.",
        )
    return base.total_bytes


def gpu_hours_in_flight() -> float:
    pending = ModelSubmission.objects.filter(status__in=PENDING_STATUSES)
    return float(pending.aggregate(total=Sum("gpu_hours_estimate"))["total"] or 0.0)


def check_queue_budget(gpu_hours: float) -> None:
    """The submissions in flight, this one included, stay within settings.QUEUE_GPU_HOURS."""
    budget = settings.QUEUE_GPU_HOURS
    in_flight = gpu_hours_in_flight()
    if in_flight + gpu_hours > budget:
        raise SubmissionError(
            "", f"Verity's queue is full: {in_flight:.1f} of its {budget:.1f} GPU-hours are waiting or running, and "
                f"this submission needs about {gpu_hours:.2f}. Try again when some runs have finished.",
        )


def planned_gpu_hours(doc: ClaimsDoc, model_bytes: int, base_bytes: int) -> float:
    benchmarks = {claim.benchmark for claim in doc.claims} | set(settings.CORE_BENCHMARKS)
    return quotas.estimate_gpu_hours(model_bytes, base_bytes, len(benchmarks), settings.DEFAULT_EVAL_LIMIT)


def check_author(user: Any, submission: ModelSubmission) -> None:
    """Only a submission's author may change it or answer on its behalf."""
    if not getattr(user, "is_authenticated", False) or submission.submitter_id != user.pk:
        raise PermissionError("Only the author of this submission can do that.")


def do_withdraw_submission(user: Any, submission: ModelSubmission) -> bool:
    """The author withdraws a pending submission: it ends rejected and its queued and running work
    is cancelled (workers.liveness). False when it is no longer pending."""
    check_author(user, submission)
    return cancel_submission(submission.pk, "withdrawn by the author")


def claims_document(data: dict[str, Any]) -> dict[str, Any]:
    """The claims-file part of a submission payload (repo, revision, kind and secret removed)."""
    return {key: value for key, value in data.items() if key not in SUBMISSION_KEYS}


def validate_submission(user: Any, data: dict[str, Any], client_ip: str | None = None) -> ValidatedSubmission:
    """Every check, cheapest first; the Hub/cache lookups only for an otherwise valid submission."""
    if not isinstance(data, dict):
        raise SubmissionError("", "A submission must be an object with repo_id, revision and claims.")
    check_payload_types(data)
    repo_id = check_repo_id(data.get("repo_id"))
    revision = check_revision(data.get("revision"))
    kind = check_kind(data.get("kind"))
    api_key = check_endpoint_api_key(data.get("endpoint_api_key"))
    claims = check_endpoint(check_claims(claims_document(data)))
    check_rate_limit(user)
    check_ip_limit(client_ip)
    repo = check_repo(repo_id, revision)
    check_not_duplicate(repo_id, repo.sha, kind)
    proof = check_owner(user, repo) if kind == ModelSubmission.Kind.AUTHOR else {}
    gpu_hours = planned_gpu_hours(claims, repo.total_bytes, check_base(claims.base_model))
    check_queue_budget(gpu_hours)
    return ValidatedSubmission(repo_id=repo_id, revision=revision, sha=repo.sha, claims=claims, kind=kind,
                               owner_proof=proof, endpoint_api_key=api_key, gpu_hours=gpu_hours, client_ip=client_ip)


def _lock_budget() -> None:
    """Hold the queue budget until the transaction ends, so concurrent submissions from many
    accounts cannot each see room for themselves (SQLite serialises writers by itself)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_BUDGET_LOCK])


def do_create_submission(
    user: Any, data: dict[str, Any], client_ip: str | None = None, *, validated: ValidatedSubmission | None = None
) -> ModelSubmission:
    """Validate and store a submission with its claims in one transaction, then queue its
    verification once the rows are committed (so the worker never looks for a missing row).
    `validated`: the form's own validation of the same data (its Hub look-ups are not repeated);
    the limits that can change in between are checked again under the lock."""
    validated = validated or validate_submission(user, data, client_ip)
    with transaction.atomic():
        # Serialise one user's concurrent submissions (rate limit, duplicates), then everyone's
        # budget check, so the limits hold under double-clicks, parallel calls and floods.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        _lock_budget()
        check_rate_limit(user)
        check_ip_limit(client_ip)
        check_not_duplicate(validated.repo_id, validated.sha, validated.kind)
        check_queue_budget(validated.gpu_hours)
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
        kind=validated.kind,
        owner_proof=validated.owner_proof or {},
        claimed_base=doc.base_model or "",
        training=doc.training,
        endpoint_url=doc.endpoint or "",
        endpoint_model=doc.endpoint_model or "",
        endpoint_api_key=validated.endpoint_api_key,
        submitter_ip=validated.client_ip,
        gpu_hours_estimate=validated.gpu_hours,
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
    try:
        send("verity.verify_submission", submission_id)
    except Exception:  # the broker is down: the row stays "received" and the sweep re-sends it
        log.exception("could not queue verification of submission %s", submission_id)
