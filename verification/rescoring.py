"""Re-scoring stored outputs with the benchmark's current extractor and scorer, without asking the
model again.

A stored per-sample output can be scored again only when it answers the prompt the current spec
would send: the items (index and id) must still be in the dataset and the rebuilt prompt must be
the stored one. When a prompt, a data file or the request kind changed, the outputs answer a
different question and a re-run is needed instead (`NotRescorable` says why).

Scoring goes through the runner's own per-item and aggregate steps, so a re-scored measurement
is computed exactly as a fresh run of the same outputs would be (errors apart from unparsed
answers, Wilson interval, secondary metrics). Harness errors stay errors: there is no model
output behind them to score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verification import runner
from verification.benchmarks.base import BenchmarkSpec, Item, Setup, content_hash
from verification.records import Generation, SampleRecord

# A log keeps at most this many flipped items by name (the counts are always complete).
MAX_LISTED_FLIPS = 200


class NotRescorable(ValueError):
    """Stored outputs that cannot be scored again; the message says why and what to do."""


@dataclass(frozen=True)
class ItemFlip:
    index: int
    item_id: str
    was_correct: bool
    now_correct: bool
    extracted_before: str | None
    extracted_after: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "item_id": self.item_id, "was_correct": self.was_correct,
            "now_correct": self.now_correct, "extracted_before": self.extracted_before,
            "extracted_after": self.extracted_after,
        }


@dataclass
class RescoreOutcome:
    """The re-scored measurement of one (run, benchmark, setup) and what changed per item."""

    benchmark: str
    old_version: str
    new_version: str
    outcome: runner.BenchmarkOutcome
    records: list[SampleRecord]
    flips: list[ItemFlip] = field(default_factory=list)
    unparsed_before: int = 0
    unparsed_after: int = 0

    @property
    def became_correct(self) -> int:
        return sum(1 for flip in self.flips if flip.now_correct)

    @property
    def became_wrong(self) -> int:
        return sum(1 for flip in self.flips if not flip.now_correct)

    def changed_records(self, before: Sequence[SampleRecord]) -> list[tuple[SampleRecord, SampleRecord]]:
        """(old, new) for every item whose stored scoring differs."""
        by_index = {record.index: record for record in self.records}
        return [(old, by_index[old.index]) for old in before if _scoring(old) != _scoring(by_index[old.index])]

    def summary(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark, "old_version": self.old_version, "new_version": self.new_version,
            "n": self.outcome.n, "became_correct": self.became_correct, "became_wrong": self.became_wrong,
            "unparsed_before": self.unparsed_before, "unparsed_after": self.unparsed_after,
            "measured": self.outcome.measured,
        }


def _scoring(record: SampleRecord) -> tuple[Any, ...]:
    return (record.correct, record.score, record.extracted, record.unparsed, record.error, record.details)


def _current_items(spec: BenchmarkSpec, datasets_dir: Path, records: Sequence[SampleRecord]) -> list[Item]:
    """The dataset items the records were measured on, in record order, checked by index and id."""
    all_items, _ = spec.read_items(datasets_dir)
    by_index = {item.index: item for item in all_items}
    items = []
    for record in records:
        item = by_index.get(record.index)
        if item is None or str(item.item_id) != str(record.item_id):
            raise NotRescorable(
                f"{spec.slug}: stored item {record.index} ({record.item_id!r}) is not in the current dataset; "
                "the items changed, so a re-run is needed"
            )
        items.append(item)
    return items


def rescore_records(
    spec: BenchmarkSpec,
    setup: Setup | dict[str, Any],
    records: Sequence[SampleRecord],
    *,
    old_version: str,
    datasets_dir: str | Path,
) -> RescoreOutcome:
    """Score `records` (one run's stored samples of `spec` under `setup`) again with the spec's
    current version. Raises NotRescorable when the stored outputs do not answer the prompts the
    current spec sends."""
    if spec.request_kind != "generate":
        raise NotRescorable(
            f"{spec.slug} is scored from log-likelihoods, which are not stored per item; re-run it instead"
        )
    if not records:
        raise NotRescorable(f"{spec.slug}: no stored samples to re-score")
    setup = setup if isinstance(setup, Setup) else Setup.from_dict(setup)
    data_dir = Path(datasets_dir)
    ordered = sorted(records, key=lambda record: record.index)
    items = _current_items(spec, data_dir, ordered)
    context = spec.prepare(data_dir, setup)
    requests = [spec.build_requests(item, setup, context) for item in items]
    for record, item_requests in zip(ordered, requests):
        if not record.error and runner._render_prompt(item_requests) != record.prompt:
            raise NotRescorable(
                f"{spec.slug}: the prompt of item {record.index} changed since its output was generated; "
                "the stored output answers another prompt, so a re-run is needed"
            )
    new_records = _score(spec, items, requests, ordered)
    scores = [runner._item_score_from_record(record) for record in new_records]
    outcome = runner._aggregate(spec, setup, items, new_records, scores)
    outcome.dataset_hash = content_hash([{"id": item.item_id, **item.data} for item in items])
    flips = [
        ItemFlip(old.index, old.item_id, old.correct, new.correct, old.extracted, new.extracted)
        for old, new in zip(ordered, new_records)
        if bool(old.correct) != bool(new.correct)
    ]
    return RescoreOutcome(
        benchmark=spec.slug, old_version=old_version, new_version=spec.version, outcome=outcome,
        records=new_records, flips=flips,
        unparsed_before=sum(1 for r in ordered if r.unparsed and not r.error),
        unparsed_after=sum(1 for r in new_records if r.unparsed and not r.error),
    )


def _score(
    spec: BenchmarkSpec, items: list[Item], requests: list[list[Any]], records: list[SampleRecord]
) -> list[SampleRecord]:
    """New records in item order: harness errors kept as they were, every output scored again."""
    to_score = [pos for pos, record in enumerate(records) if not record.error]
    scored, _ = runner._score_chunk(
        spec,
        [items[pos] for pos in to_score],
        [requests[pos] for pos in to_score],
        [[Generation(text=records[pos].output)] for pos in to_score],
        None,
    )
    by_index = {record.index: record for record in scored}
    return [by_index[record.index] if not record.error else record for record in records]
