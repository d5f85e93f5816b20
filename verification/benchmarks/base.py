"""What a benchmark is: a declarative, versioned spec (dataset + prompt template + extractor +
scorer + metric + version) that the runner drives.

A spec never talks to a backend itself: it turns an item into requests (`build_requests`), and
the runner sends the requests of a whole chunk to the backend in one call, then hands each item's
responses back to the spec (`score`). That keeps batching in one place and lets the reference
backends (null, oracle, faulty) exercise exactly the code paths real models do.

Bump `version` whenever anything that changes a score changes (prompt, extractor, data file).
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from verification.datasets import DatasetUnavailable, HubSource, resolve_file  # noqa: F401 (re-export)
from verification.records import (
    ChoiceRequest,
    ChoiceScores,
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    SamplingParams,
)

RequestKind = Literal["generate", "loglikelihood", "choice"]
Request = Union[GenerationRequest, LoglikelihoodRequest, ChoiceRequest]
Response = Union[Generation, Loglikelihood, ChoiceScores]


class UnsupportedSetup(ValueError):
    """The claimed setup cannot be run by this benchmark (the reason says why)."""


@dataclass(frozen=True)
class Setup:
    """How a benchmark is prompted: number of few-shot examples, chain-of-thought exemplars or
    not, and whether the prompt is wrapped in the model's chat template."""

    shots: int = 0
    cot: bool = False
    chat_template: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """Canonical JSON (sorted keys): what the DB stores as setup_key."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Setup:
        unknown = set(data) - {"shots", "cot", "chat_template"}
        if unknown:
            raise ValueError(f"unknown setup fields: {sorted(unknown)}")
        return cls(
            shots=int(data.get("shots", 0)),
            cot=bool(data.get("cot", False)),
            chat_template=bool(data.get("chat_template", False)),
        )


@dataclass(frozen=True)
class Subsample:
    """A seeded random subset of n items (a separate option from `limit`, which takes the first
    N items in the dataset's canonical order)."""

    n: int
    seed: int = 0


@dataclass
class Item:
    index: int  # position in the dataset's canonical order (stable across limit/subsample)
    item_id: str
    data: dict[str, Any]
    group: str | None = None  # shared passage / subject, for clustered SEs and breakdowns


@dataclass
class LoadedDataset:
    items: list[Item]
    content_hash: str  # sha256 of the canonical JSON of exactly the items evaluated
    source: dict[str, Any]  # where the data came from: local path + file sha256, or hub repo@commit
    total_available: int = 0


@dataclass
class ItemScore:
    """What a scorer says about one item."""

    correct: bool
    score: float
    extracted: str | None
    output: str
    unparsed: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def content_hash(records: Sequence[dict[str, Any]]) -> str:
    payload = json.dumps(list(records), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def coerce_subsample(subsample: Subsample | int | tuple[int, int] | None) -> Subsample | None:
    if subsample is None or isinstance(subsample, Subsample):
        return subsample
    if isinstance(subsample, int):
        return Subsample(subsample)
    n, seed = subsample
    return Subsample(int(n), int(seed))


def select_items(
    items: list[Item], *, limit: int | None, subsample: Subsample | int | tuple[int, int] | None
) -> list[Item]:
    """Seeded subsample first (kept in canonical order), then the first `limit` of what is left."""
    chosen = items
    sub = coerce_subsample(subsample)
    if sub is not None:
        if sub.n < 0:
            raise ValueError("subsample size must be >= 0")
        if sub.n < len(items):
            picked = sorted(random.Random(sub.seed).sample(range(len(items)), sub.n))
            chosen = [items[i] for i in picked]
    if limit is not None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        chosen = chosen[:limit]
    return chosen


class BenchmarkSpec(ABC):
    slug: str
    version: str
    title: str = ""
    default_setup: Setup = Setup()
    request_kind: RequestKind = "generate"
    primary_metric: str = "acc"
    # True when per-item scores are partial credit (MC2). Informational: stats.standard_error
    # detects non-0/1 scores itself and then uses the sample variance.
    partial_credit: bool = False
    # True when items sharing `Item.group` are correlated (shared passage): clustered SE.
    clustered: bool = False
    # Data file (path relative to DATASETS_DIR) -> the same file on the Hub at a pinned revision,
    # used when the local copy is absent. The file must have the local file's schema.
    hub_sources: dict[str, HubSource] = {}

    def set_hub_source(self, relative_path: str, source: HubSource) -> None:
        self.hub_sources = {**self.hub_sources, relative_path: source}

    def data_file(self, datasets_dir: Path, relative_path: str) -> tuple[Path, dict[str, Any]]:
        """The local copy under DATASETS_DIR, else the pinned hub file; records which."""
        return resolve_file(datasets_dir, relative_path, self.hub_sources.get(relative_path))

    # ---- setups -------------------------------------------------------------------------
    def unsupported_reason(self, setup: Setup) -> str | None:
        """None when `setup` can be run faithfully, else a sentence saying why not."""
        return None

    def supports(self, setup: Setup) -> bool:
        return self.unsupported_reason(setup) is None

    # ---- data ---------------------------------------------------------------------------
    @abstractmethod
    def read_items(self, datasets_dir: Path) -> tuple[list[Item], dict[str, Any]]:
        """All items in canonical order, and a description of the source."""

    def load(
        self,
        datasets_dir: str | Path,
        *,
        limit: int | None = None,
        subsample: Subsample | int | tuple[int, int] | None = None,
    ) -> LoadedDataset:
        items, source = self.read_items(Path(datasets_dir))
        chosen = select_items(items, limit=limit, subsample=subsample)
        return LoadedDataset(
            items=chosen,
            content_hash=content_hash([{"id": it.item_id, **it.data} for it in chosen]),
            source=source,
            total_available=len(items),
        )

    def prepare(self, datasets_dir: Path, setup: Setup) -> Any:
        """Shared prompt material for a run (few-shot exemplars); passed to build_requests."""
        return None

    # ---- prompting and scoring -----------------------------------------------------------
    def sampling_params(self, setup: Setup) -> SamplingParams | None:
        """Decoding settings for generative benchmarks (None for log-likelihood ones)."""
        return None

    @abstractmethod
    def build_requests(self, item: Item, setup: Setup, context: Any) -> list[Request]:
        ...

    @abstractmethod
    def score(self, item: Item, requests: list[Request], responses: list[Response]) -> ItemScore:
        """Score one item from its responses. Raising means a scorer crash (counted in
        n_errors); a model answer that yields nothing extractable is `unparsed=True`."""

    def score_batch(
        self, items: list[Item], requests: list[list[Request]], responses: list[list[Response]]
    ) -> list[ItemScore | BaseException]:
        """Score several items; a failure of one item is returned in its place, never raised."""
        out: list[ItemScore | BaseException] = []
        for item, reqs, resps in zip(items, requests, responses):
            try:
                out.append(self.score(item, reqs, resps))
            except Exception as exc:  # a scorer crash is a harness error for that item only
                out.append(exc)
        return out

    def gold_responses(self, item: Item, requests: list[Request]) -> list[Response]:
        """Responses a perfect model would give (the oracle backend feeds them back; every
        benchmark must then score 100%)."""
        raise NotImplementedError(f"{self.slug} has no gold responses")

    def gold_text(self, item: Item) -> str:
        """The gold answer as it is stored with each SampleRecord."""
        return ""

    def secondary_metrics(self, scores: list[ItemScore | None], items: list[Item]) -> dict[str, Any]:
        """Extra metrics (None entries are errored items, scored 0)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "version": self.version,
            "title": self.title,
            "default_setup": self.default_setup.as_dict(),
            "request_kind": self.request_kind,
            "primary_metric": self.primary_metric,
        }
