"""The one validator for a submission's claims, shared by the `verify` CLI, the submission form
and the API, so all three accept exactly the same documents and say the same thing about bad ones.

A claims document:
    {"base_model": "org/name", "training": "full|lora|merge|unknown",
     "endpoint": "http://…/v1", "endpoint_model": "...",
     "claims": [{"benchmark": "gsm8k", "score": 99.2, "shots": 8, "cot": true}]}
Scores are points (0–100). Every key but `claims` is optional.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from verification.vocabulary import TRAINING_KINDS
MAX_SHOTS = 64
MAX_CLAIMS = 50
# Same shape rule as leaderboard.models.REPO_ID_REGEX (huggingface_hub's validate_repo_id, namespaced).
REPO_ID_RE = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$"
)
_TOP_KEYS = {"base_model", "training", "endpoint", "endpoint_model", "claims"}
_CLAIM_KEYS = {"benchmark", "score", "shots", "cot", "chat_template", "source_url"}


class ClaimsError(ValueError):
    """A claims document that cannot be accepted; the message says which field and why."""


@dataclass(frozen=True)
class ClaimSpec:
    benchmark: str
    score: float
    shots: int | None = None
    cot: bool | None = None
    chat_template: bool | None = None
    source_url: str = ""

    def setup(self) -> dict[str, Any]:
        """The claimed evaluation setup, only the parts the author stated."""
        return {
            key: value
            for key, value in (
                ("shots", self.shots),
                ("cot", self.cot),
                ("chat_template", self.chat_template),
            )
            if value is not None
        }

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"benchmark": self.benchmark, "score": self.score, **self.setup()}
        if self.source_url:
            data["source_url"] = self.source_url
        return data


@dataclass(frozen=True)
class ClaimsDoc:
    claims: tuple[ClaimSpec, ...] = ()
    base_model: str | None = None
    training: str = "unknown"
    endpoint: str | None = None
    endpoint_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def by_benchmark(self) -> dict[str, ClaimSpec]:
        return {claim.benchmark: claim for claim in self.claims}

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"training": self.training, "claims": [c.as_dict() for c in self.claims]}
        if self.base_model:
            data["base_model"] = self.base_model
        if self.endpoint:
            data["endpoint"] = self.endpoint
        if self.endpoint_model:
            data["endpoint_model"] = self.endpoint_model
        return data


def known_benchmarks() -> list[str]:
    """Slugs the engine can measure (the benchmark registry is the one source of truth)."""
    from verification.benchmarks import registry

    return sorted(spec.slug for spec in registry.all_specs())


# Held-out sets exist to check public claims; nobody can claim a score on them (gsm_fresh is
# regenerated every run, private sets are never published).
HELDOUT_BENCHMARKS = frozenset({"gsm_fresh"})


def claimable_benchmarks() -> list[str]:
    """Slugs an author may claim a score on: the measurable public benchmarks."""
    from verification.private_sets import is_private

    return [slug for slug in known_benchmarks() if slug not in HELDOUT_BENCHMARKS and not is_private(slug)]


def is_repo_id(value: str) -> bool:
    return bool(REPO_ID_RE.match(value)) and "--" not in value and ".." not in value


def parse_claims(data: Any, known: Iterable[str] | None = None) -> ClaimsDoc:
    """Validate a claims document (already decoded JSON) and return it typed.

    `known` is the set of benchmark slugs accepted; by default the engine's registry."""
    if not isinstance(data, dict):
        raise ClaimsError(f"claims document must be a JSON object, got {_type_name(data)}")
    unknown_keys = sorted(set(data) - _TOP_KEYS)
    if unknown_keys:
        raise ClaimsError(
            f"unknown key(s) {', '.join(unknown_keys)}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    known_set = set(known) if known is not None else set(claimable_benchmarks())
    raw_claims = data.get("claims", [])
    if not isinstance(raw_claims, list):
        raise ClaimsError(f"'claims' must be a list, got {_type_name(raw_claims)}")
    if len(raw_claims) > MAX_CLAIMS:
        raise ClaimsError(f"too many claims ({len(raw_claims)}); at most {MAX_CLAIMS}")
    claims = [_parse_claim(i, raw, known_set) for i, raw in enumerate(raw_claims)]
    seen: set[str] = set()
    for claim in claims:
        if claim.benchmark in seen:
            raise ClaimsError(f"benchmark {claim.benchmark!r} is claimed twice; give one claim per benchmark")
        seen.add(claim.benchmark)
    return ClaimsDoc(
        claims=tuple(claims),
        base_model=_parse_base_model(data.get("base_model")),
        training=_parse_training(data.get("training")),
        endpoint=_parse_endpoint(data.get("endpoint")),
        endpoint_model=_optional_str(data, "endpoint_model", max_length=200),
    )


def load_claims_file(path: str | Path, known: Iterable[str] | None = None) -> ClaimsDoc:
    """Read and validate a claims JSON file (the CLI's --claims)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ClaimsError(f"cannot read claims file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClaimsError(f"claims file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_claims(data, known=known)


def _parse_claim(position: int, raw: Any, known: set[str]) -> ClaimSpec:
    where = f"claims[{position}]"
    if not isinstance(raw, dict):
        raise ClaimsError(f"{where} must be an object, got {_type_name(raw)}")
    extra = sorted(set(raw) - _CLAIM_KEYS)
    if extra:
        raise ClaimsError(
            f"{where}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(_CLAIM_KEYS))}"
        )
    benchmark = raw.get("benchmark")
    if not isinstance(benchmark, str) or not benchmark.strip():
        raise ClaimsError(f"{where}.benchmark must be a benchmark name (string)")
    benchmark = benchmark.strip().lower()
    if benchmark not in known:
        raise ClaimsError(
            f"{where}: unknown benchmark {benchmark!r}; known: {', '.join(sorted(known)) or '(none)'}"
        )
    score = raw.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise ClaimsError(f"{where}.score must be a number of points (0–100), got {_type_name(score)}")
    # Compared before any float conversion: an integer like 10**400 has no float.
    if not 0 <= score <= 100 or not math.isfinite(score):
        raise ClaimsError(f"{where}.score {str(score)[:24]} is outside 0–100 (scores are points, e.g. 85.3)")
    shots = raw.get("shots")
    if shots is not None and (
        isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= MAX_SHOTS
    ):
        raise ClaimsError(f"{where}.shots must be an integer from 0 to {MAX_SHOTS}, got {shots!r}")
    for key in ("cot", "chat_template"):
        if raw.get(key) is not None and not isinstance(raw[key], bool):
            raise ClaimsError(f"{where}.{key} must be true or false, got {raw[key]!r}")
    source_url = raw.get("source_url") or ""
    if not isinstance(source_url, str):
        raise ClaimsError(f"{where}.source_url must be an http(s) URL (string), got {_type_name(source_url)}")
    if source_url and not _is_http_url(source_url):
        raise ClaimsError(f"{where}.source_url must be an http(s) URL, got {source_url!r}")
    return ClaimSpec(
        benchmark=benchmark,
        score=float(score),
        shots=shots,
        cot=raw.get("cot"),
        chat_template=raw.get("chat_template"),
        source_url=source_url,
    )


def _parse_base_model(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ClaimsError(f"'base_model' must be a repo id like 'org/name', got {_type_name(value)}")
    value = value.strip()
    if not is_repo_id(value):
        raise ClaimsError(f"'base_model' {value!r} is not a valid Hugging Face repo id (expected 'org/name')")
    return value


def _parse_training(value: Any) -> str:
    if value is None or value == "":
        return "unknown"
    if value not in TRAINING_KINDS:
        raise ClaimsError(f"'training' must be one of {', '.join(TRAINING_KINDS)}, got {value!r}")
    return value


def _parse_endpoint(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _is_http_url(value):
        raise ClaimsError(f"'endpoint' must be an http(s) URL such as http://host/v1, got {value!r}")
    return value.strip()


def _optional_str(data: dict, key: str, max_length: int) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ClaimsError(f"'{key}' must be a string, got {_type_name(value)}")
    if len(value) > max_length:
        raise ClaimsError(f"'{key}' is longer than {max_length} characters")
    return value.strip()


def _is_http_url(value: str) -> bool:
    parsed = urlparse(value.strip())
    return parsed.scheme in {"http", "https"} and bool(parsed.netloc) and len(value) <= 500


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )
