"""Private held-out benchmarks: storage, versioning, loading, and the rules that keep their items
secret.

A maintainer adds a JSONL file in a declared format:
- `gsm8k`: {"question": str, "answer": "<solution> #### N"} (or just "#### N"), optional "id";
- `mc`:    {"question": str, "choices": [2..10 str], "answer": index 0.. or letter "A".., optional "id"}.
The file is validated, canonicalised and stored as `<PRIVATE_BENCHMARKS_DIR>/<slug>/<sha256>.jsonl`
(0600, directory 0700), next to a `manifest.json` listing its versions; the version is the
content hash, so the same content always has the same version and any change makes a new one.

Secrecy rules (what every other component must do with a private set):
- Slugs start with `private_`, so any process (web, worker, CLI) recognises a private set by its
  name alone, even without access to the store: `is_private(slug)`.
- Pages, API, exports: aggregates only (score, CI, n).
- The pipeline stores no per-item prompt/output/extracted/gold/item id for a private set:
  `redact_sample(record)` returns the SampleRecord to store (scores and flags only).
- Logs, error messages, task arguments and results carry no item text: `safe_error(exc)` is the
  message to record for a failure on a private item. Validation errors here name line numbers and
  fields, never content.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PRIVATE_PREFIX = "private_"
FORMATS = ("gsm8k", "mc")
# The public benchmark each format is compared with in the held-out gap, unless given.
DEFAULT_COUNTERPART = {"gsm8k": "gsm8k", "mc": "mmlu"}
SLUG_RE = re.compile(r"^private_[a-z0-9][a-z0-9_]{0,55}$")
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ITEMS = 100_000
MAX_FIELD_CHARS = 20_000
LETTERS = "ABCDEFGHIJ"
MANIFEST = "manifest.json"


class PrivateSetError(ValueError):
    """Bad input for a private set. Messages never contain item content."""


def is_private(slug: str) -> bool:
    """True for every private benchmark slug (the `private_` prefix is enforced at upload)."""
    return isinstance(slug, str) and slug.startswith(PRIVATE_PREFIX)


def private_dir(directory: str | Path | None) -> Path:
    """The private store the caller was configured with (PRIVATE_BENCHMARKS_DIR)."""
    if not directory:
        raise PrivateSetError("no private benchmark store configured (PRIVATE_BENCHMARKS_DIR)")
    return Path(directory)


def check_slug(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise PrivateSetError(
            f"private benchmark slugs must match {SLUG_RE.pattern} (the 'private_' prefix lets every "
            "process recognise a private set by its name)"
        )
    return slug


# --- validation --------------------------------------------------------------------------------


def _text_field(row: dict[str, Any], key: str, line: int) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PrivateSetError(f"line {line}: field '{key}' must be a non-empty string")
    if len(value) > MAX_FIELD_CHARS:
        raise PrivateSetError(f"line {line}: field '{key}' is longer than {MAX_FIELD_CHARS} characters")
    return value


def _gsm8k_record(row: dict[str, Any], line: int) -> dict[str, Any]:
    from verification.scoring.numbers import to_rational

    question = _text_field(row, "question", line)
    answer = _text_field(row, "answer", line)
    if "####" not in answer or to_rational(answer.split("####")[-1].strip()) is None:
        raise PrivateSetError(f"line {line}: field 'answer' must end with '#### <number>'")
    return {"question": question, "answer": answer}


def _mc_record(row: dict[str, Any], line: int) -> dict[str, Any]:
    question = _text_field(row, "question", line)
    choices = row.get("choices")
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
        raise PrivateSetError(f"line {line}: field 'choices' must be a list of 2 to {len(LETTERS)} strings")
    if not all(isinstance(c, str) and c.strip() for c in choices):
        raise PrivateSetError(f"line {line}: every choice must be a non-empty string")
    answer = row.get("answer")
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        gold = LETTERS.index(answer.strip().upper())
    elif isinstance(answer, int) and not isinstance(answer, bool):
        gold = answer
    else:
        raise PrivateSetError(f"line {line}: field 'answer' must be a choice index or letter")
    if not 0 <= gold < len(choices):
        raise PrivateSetError(f"line {line}: field 'answer' points outside the choices")
    return {"question": question, "choices": list(choices), "gold": gold}


def parse_records(data: bytes, fmt: str) -> list[dict[str, Any]]:
    """Validated, canonical records from JSONL bytes; ids default to the line's position."""
    if fmt not in FORMATS:
        raise PrivateSetError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if len(data) > MAX_FILE_BYTES:
        raise PrivateSetError(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PrivateSetError(f"file is not UTF-8 (byte {exc.start})") from None
    convert = _gsm8k_record if fmt == "gsm8k" else _mc_record
    records: list[dict[str, Any]] = []
    seen_ids: set[str] = set()
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PrivateSetError(f"line {line_no}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise PrivateSetError(f"line {line_no}: expected a JSON object")
        record = convert(row, line_no)
        item_id = str(row["id"]) if "id" in row and row["id"] is not None else str(len(records))
        if len(item_id) > 200:
            raise PrivateSetError(f"line {line_no}: field 'id' is longer than 200 characters")
        if item_id in seen_ids:
            raise PrivateSetError(f"line {line_no}: duplicate id")
        seen_ids.add(item_id)
        records.append({"id": item_id, **record})
        if len(records) > MAX_ITEMS:
            raise PrivateSetError(f"more than {MAX_ITEMS} items")
    if not records:
        raise PrivateSetError("the file holds no items")
    return records


def canonical_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(
        json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records
    ).encode("utf-8")


def content_hash(records: Sequence[dict[str, Any]]) -> str:
    return hashlib.sha256(canonical_bytes(records)).hexdigest()


# --- storage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateSetInfo:
    slug: str
    format: str
    content_hash: str  # sha256 hex of the canonical records
    n_items: int
    path: Path
    public_counterpart: str
    created: str

    @property
    def version(self) -> str:
        """Short content hash: fits BenchmarkResult.benchmark_version and names the version."""
        return self.content_hash[:16]

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug, "format": self.format, "content_hash": self.content_hash,
            "version": self.version, "n_items": self.n_items, "path": str(self.path),
            "public_counterpart": self.public_counterpart, "created": self.created,
        }


def _write_private(path: Path, data: bytes) -> None:
    """Atomic write with owner-only permissions."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_manifest(slug_dir: Path) -> dict[str, Any]:
    path = slug_dir / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def store(
    slug: str, fmt: str, data: bytes, *, directory: str | Path | None = None, public_counterpart: str | None = None
) -> PrivateSetInfo:
    """Validate and store a private set; returns the (possibly already existing) version."""
    check_slug(slug)
    records = parse_records(data, fmt)
    digest = content_hash(records)
    root = private_dir(directory)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    slug_dir = root / slug
    manifest = _read_manifest(slug_dir)
    if manifest and manifest.get("format") != fmt:
        raise PrivateSetError(f"{slug} is stored in format {manifest.get('format')!r}; use a new slug for another format")
    counterpart = public_counterpart or manifest.get("public_counterpart") or DEFAULT_COUNTERPART[fmt]
    target = slug_dir / f"{digest}.jsonl"
    if not target.is_file():
        _write_private(target, canonical_bytes(records))
    versions = [v for v in manifest.get("versions", []) if v["content_hash"] != digest]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    versions.append({"content_hash": digest, "n_items": len(records), "created": created})
    manifest = {"slug": slug, "format": fmt, "public_counterpart": counterpart, "current": digest, "versions": versions}
    _write_private(slug_dir / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
    return PrivateSetInfo(slug, fmt, digest, len(records), target, counterpart, created)


def info(slug: str, *, directory: str | Path | None = None, content_hash: str | None = None) -> PrivateSetInfo:
    """The current (or a given) version of a stored private set."""
    check_slug(slug)
    slug_dir = private_dir(directory) / slug
    manifest = _read_manifest(slug_dir)
    if not manifest:
        raise PrivateSetError(f"no private benchmark {slug!r} in the private store")
    digest = content_hash or manifest["current"]
    version = next((v for v in manifest["versions"] if v["content_hash"] == digest), None)
    if version is None:
        raise PrivateSetError(f"{slug} has no version {digest[:16]}")
    return PrivateSetInfo(
        slug, manifest["format"], digest, int(version["n_items"]), slug_dir / f"{digest}.jsonl",
        manifest["public_counterpart"], version["created"],
    )


def list_sets(directory: str | Path | None = None) -> list[PrivateSetInfo]:
    root = private_dir(directory)
    if not root.is_dir():
        return []
    return [info(p.name, directory=root) for p in sorted(root.iterdir()) if (p / MANIFEST).is_file()]


def load_records(set_info: PrivateSetInfo) -> list[dict[str, Any]]:
    """The stored records, checked against their content hash (a tampered file is refused)."""
    data = set_info.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != set_info.content_hash:
        raise PrivateSetError(f"{set_info.slug} version {set_info.version}: stored file does not match its hash")
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def public_counterpart(slug: str, directory: str | Path | None = None) -> str | None:
    """The public benchmark a private set is compared with: from its registered spec (this
    process measured it), else from the store in `directory`; None when unknown here."""
    if not is_private(slug):
        return None
    from verification.benchmarks import registry

    try:
        return registry.get(slug).public_counterpart
    except (KeyError, AttributeError):
        pass
    try:
        return info(slug, directory=directory).public_counterpart
    except (PrivateSetError, OSError, KeyError, ValueError):
        return None


# --- evaluation -----------------------------------------------------------------------------


def spec_for(slug: str, *, directory: str | Path | None = None, content_hash: str | None = None):
    """A benchmark spec over the stored set (spec.private is True). gsm8k format: GSM8K's
    prompts, extraction and scoring; mc format: letter choice by log-likelihood, zero-shot."""
    set_info = info(slug, directory=directory, content_hash=content_hash)

    def loader(_datasets_dir) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        # The source names the version only: a path or content would be stored with the run.
        return load_records(set_info), {"kind": "private", "slug": slug, "version": set_info.version}

    if set_info.format == "gsm8k":
        from verification.benchmarks.gsm8k import gsm8k_style_spec

        spec = gsm8k_style_spec(slug, set_info.version, loader, title=slug)
    else:
        spec = PrivateMCSpec(slug, set_info.version, loader)
    spec.private = True  # type: ignore[attr-defined]
    spec.public_counterpart = set_info.public_counterpart  # type: ignore[attr-defined]
    return spec


def register_all(directory: str | Path | None = None) -> list[str]:
    """Register every stored private set's current version in the benchmark registry."""
    from verification.benchmarks import registry

    slugs = []
    for set_info in list_sets(directory):
        registry.register(spec_for(set_info.slug, directory=directory), replace=True)
        slugs.append(set_info.slug)
    return slugs


@functools.lru_cache(maxsize=1)
def _private_mc_class():
    from verification.benchmarks.base import DatasetUnavailable, Item, Setup
    from verification.benchmarks.multiple_choice import LETTERS as MC_LETTERS
    from verification.benchmarks.multiple_choice import LetterChoiceSpec
    from verification.records import ChoiceRequest

    class _PrivateMCSpec(LetterChoiceSpec):
        primary_metric = "acc"
        default_setup = Setup(shots=0, cot=False, chat_template=False)

        def __init__(self, slug: str, version: str, loader) -> None:
            self.slug = slug
            self.version = version
            self.title = slug
            self._loader = loader

        def unsupported_reason(self, setup: Setup) -> str | None:
            if setup.shots or setup.cot or setup.chat_template:
                return "private multiple-choice sets run zero-shot by answer-letter log-likelihood only"
            return None

        def read_items(self, datasets_dir: Path):
            records, source = self._loader(datasets_dir)
            items = []
            for index, record in enumerate(records):
                if "question" not in record or "choices" not in record or "gold" not in record:
                    raise DatasetUnavailable(f"{self.slug}: stored item {index} is malformed")
                items.append(Item(index, str(record.get("id", index)), record))
            return items, source

        def build_requests(self, item: Item, setup: Setup, context: Any):
            choices = item.data["choices"]
            prompt = (
                "The following is a multiple choice question. Answer with the letter of the correct choice.\n\n"
                + item.data["question"].strip() + "\n"
                + "".join(f"{MC_LETTERS[i]}. {c}\n" for i, c in enumerate(choices))
                + "Answer:"
            )
            return [ChoiceRequest(prompt, tuple(f" {MC_LETTERS[i]}" for i in range(len(choices))))]

    return _PrivateMCSpec


def PrivateMCSpec(slug: str, version: str, loader):  # noqa: N802 - a class built lazily
    return _private_mc_class()(slug, version, loader)


# --- secrecy helpers for the pipeline ------------------------------------------------------------


def redact_sample(record):
    """The SampleRecord to store for a private item: correctness, score, error/unparsed flags and
    its position; no prompt, output, extraction, gold, item id or details."""
    return replace(
        record,
        item_id="",
        prompt="",
        output="",
        extracted=None,
        gold="",
        error="error (details withheld: private benchmark)" if record.error else None,
        details={},
    )


def safe_error(exc: BaseException | str | None) -> str:
    """An error message that can be logged or stored for a private item: the type only."""
    if exc is None:
        return ""
    kind = type(exc).__name__ if isinstance(exc, BaseException) else "error"
    return f"{kind} (details withheld: private benchmark)"
