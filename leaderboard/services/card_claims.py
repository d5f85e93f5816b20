"""Scores a repository states about itself (README model-index, `.eval_results/*.yaml`), offered
on the submit form as claims for the author to confirm.

Reading them means asking the Hub for files a stranger wrote, so it is bounded and kept off the
request path:

- caps: the card at most MAX_CARD_BYTES, at most MAX_EVAL_RESULT_FILES result files of at most
  MAX_EVAL_RESULT_BYTES each (sizes checked before anything is downloaded);
- the fetch runs in a small pool of background threads of the web process (CARD_FETCH_THREADS,
  with at most CARD_FETCH_SLOTS fetches running or waiting); the request waits at most
  CARD_WAIT_S for it and otherwise answers "still reading", and the page polls. Results (and
  "in progress" markers) live in the shared cache, so any web process can answer the poll, and a
  slow or huge repository holds one thread, never a web worker.

A Celery task was the other choice; the web process's own pool keeps a form helper out of the
GPU pipeline's queues and needs no broker round trip for a repository already in the cache.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from django.core.cache import cache

from leaderboard.services import hub
from leaderboard.services.eval_results import HUB_BENCHMARKS
from leaderboard.services.submissions import check_repo_id, check_revision
from verification.claims import claimable_benchmarks
from verification.intake import IntakeRefused, TransientHubError

log = logging.getLogger(__name__)

MAX_CARD_BYTES = 256 * 1024
MAX_EVAL_RESULT_FILES = 16
MAX_EVAL_RESULT_BYTES = 64 * 1024
CARD_FETCH_THREADS = 2
CARD_FETCH_SLOTS = 8
CARD_WAIT_S = 1.5
PENDING_TTL_S = 60  # a fetch that has not answered by then is given up (a later poll retries)
RESULT_TTL_S = 600
_PENDING = "pending"

_executor = ThreadPoolExecutor(max_workers=CARD_FETCH_THREADS, thread_name_prefix="card-claims")
_slots = threading.BoundedSemaphore(CARD_FETCH_SLOTS)

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


@dataclass(frozen=True)
class CardClaims:
    """The answer to one look-up: `ready` with the claims found, or not yet (`busy`: no fetch
    could be started now)."""

    ready: bool
    claims: tuple[CardClaim, ...] = ()
    busy: bool = False


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, (int, float)) else float(str(value).strip().rstrip("%"))
    except (ValueError, OverflowError):
        return None
    return number if 0 <= number <= 100 else None


def _as_points(value: Any, in_points: bool = False) -> float | None:
    """Cards mix fractions (0.853) and points (85.3); a value at most 1 is read as a fraction
    unless its file is known to state points (`in_points`: another value of the same file is
    above 1, as in Verity's own export). The author confirms every offered score before
    submitting."""
    number = _number(value)
    if number is None:
        return None
    return round(number * 100, 4) if number <= 1 and not in_points else number


# (Hub dataset id, task id) -> slug: the export's own table read backwards (one benchmark per pair).
HUB_TASK_SLUGS: dict[tuple[str, str], str] = {
    (hub.dataset_id.lower(), hub.task_id.lower()): slug for slug, hub in HUB_BENCHMARKS.items()
}


def _slug_for(dataset_id: str | None, task: str | None = None) -> str | None:
    """The benchmark a (dataset, task) names: the exact pair Verity exports first, else the
    dataset alone (older cards, model-index), where the task only tells ARC-Easy and
    TruthfulQA's mc2 apart."""
    if not dataset_id or not isinstance(dataset_id, str):
        return None
    dataset = dataset_id.strip().lower()
    task_text = str(task).strip().lower() if task else ""
    exact = HUB_TASK_SLUGS.get((dataset, task_text))
    if exact is not None:
        return exact
    slug = HUB_DATASET_SLUGS.get(dataset)
    if slug == "arc_challenge" and "easy" in task_text:
        return None  # ARC-Easy is not ARC-Challenge
    if slug == "truthfulqa_mc1" and "mc2" in task_text:
        return "truthfulqa_mc2"
    return slug


def _model_index_claims(card_text: str) -> list[CardClaim]:
    from huggingface_hub import ModelCard

    card = ModelCard(card_text, ignore_metadata_errors=True)
    found = []
    for result in getattr(card.data, "eval_results", None) or []:
        slug = _slug_for(result.dataset_type, result.dataset_config or result.dataset_name)
        score = _as_points(result.metric_value)
        if slug and score is not None:
            found.append(CardClaim(slug, score, "model-index"))
    return found


def _eval_results_claims(files: dict[str, str]) -> list[CardClaim]:
    import yaml
    from huggingface_hub import parse_eval_result_entries

    found = []
    for name, text in files.items():
        try:
            data = yaml.safe_load(text)
            entries = parse_eval_result_entries(data if isinstance(data, list) else [data])
        except Exception:  # a hostile or malformed file is skipped, never trusted
            log.info("skipping unreadable eval results file %s", name)
            continue
        in_points = any((_number(entry.value) or 0) > 1 for entry in entries)
        for entry in entries:
            slug = _slug_for(entry.dataset_id, entry.task_id)
            score = _as_points(entry.value, in_points)
            if slug and score is not None:
                found.append(CardClaim(slug, score, name))
    return found


def read_card_claims(repo_id: str, revision: str) -> list[CardClaim]:
    """The claims the repo states at `revision`, within the caps; any failure offers nothing."""
    try:
        repo = hub.repo_at(repo_id, revision)
        names = sorted(n for n in repo.files if n.startswith(".eval_results/") and n.endswith(".yaml"))
        results = {name: repo.read_small(name, MAX_EVAL_RESULT_BYTES) for name in names[:MAX_EVAL_RESULT_FILES]}
        found = _eval_results_claims({name: text for name, text in results.items() if text is not None})
        card = repo.read_small("README.md", MAX_CARD_BYTES)
        if card is not None:
            found += _model_index_claims(card)
    except (IntakeRefused, TransientHubError):
        return []
    except Exception:
        log.info("could not read claims from the card of %s@%s", repo_id, revision, exc_info=True)
        return []
    by_slug: dict[str, CardClaim] = {}
    for claim in found:  # .eval_results first: it is the Hub's current format
        by_slug.setdefault(claim.benchmark, claim)
    known = set(claimable_benchmarks())
    return [claim for slug, claim in sorted(by_slug.items()) if slug in known]


def _cache_key(repo_id: str, revision: str) -> str:
    return "card-claims:" + hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def _fetch_into_cache(key: str, repo_id: str, revision: str) -> None:
    try:
        claims = read_card_claims(repo_id, revision)
        cache.set(key, [asdict(claim) for claim in claims], RESULT_TTL_S)
    except Exception:
        log.exception("card claims fetch of %s failed", repo_id)
        cache.delete(key)
    finally:
        _slots.release()


def _from_cache(key: str) -> CardClaims | None:
    value = cache.get(key)
    if isinstance(value, list):
        return CardClaims(ready=True, claims=tuple(CardClaim(**item) for item in value))
    if value == _PENDING:
        return CardClaims(ready=False)
    return None


def card_claims(repo_id: Any, revision: Any = "main") -> CardClaims:
    """The card's claims if known; otherwise start (or join) a bounded background fetch and
    wait for it at most CARD_WAIT_S. Raises SubmissionError for a malformed repo id/revision."""
    repo_id = check_repo_id(repo_id)
    revision = check_revision(revision)
    key = _cache_key(repo_id, revision)
    known = _from_cache(key)
    if known is not None and known.ready:
        return known
    if known is None:
        if not _slots.acquire(blocking=False):
            return CardClaims(ready=False, busy=True)
        if not cache.add(key, _PENDING, PENDING_TTL_S):
            _slots.release()  # another request started it meanwhile
        else:
            future = _executor.submit(_fetch_into_cache, key, repo_id, revision)
            try:
                future.result(timeout=CARD_WAIT_S)
            except Exception:  # still running (or failed): the page polls
                pass
    return _from_cache(key) or CardClaims(ready=False)

