"""Re-scoring stored outputs after an extractor or scorer changed version.

For every finished run whose latest result of a benchmark was scored by an older version, the
stored per-sample outputs are scored again by the engine (verification.rescoring, no model call)
and written as a NEW BenchmarkResult with the current version beside the old one, which is kept.
The per-sample rows are updated to the current scoring, each changed row keeping its previous
scoring under details["rescored_from"]. A RescoreLog records what changed.

Then the claim is judged again by the one judge (verification.compare.judge_claim): a flag it
raises goes through the one flag writer (services.flags.do_raise_flag: a finding that stands
gets a "seen again" note), and a score_mismatch or invalid_run flag on this benchmark from this
run whose evidence no longer holds is resolved, with the reason, in triage's vocabulary
(open/confirmed -> resolved). Finally the leaderboard row is rebuilt (a re-scored result
supersedes the one it re-scored: services.leaderboard.split_superseded), and with it the
submission's status is recomputed from the flags that stand (services.leaderboard.status_now):
resolving its only flag makes it verified, or incomplete when a check did not run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from leaderboard.models import (
    BenchmarkResult,
    EvaluationRun,
    Flag,
    FlagEvent,
    RescoreLog,
    SampleResult,
)
from leaderboard.services import notifications
from leaderboard.services.flags import STANDING, do_raise_flag
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry, latest_finished_run
from leaderboard.services.triage import TRANSITIONS
from verification import rescoring
from verification.benchmarks import registry
from verification.benchmarks.base import BenchmarkSpec, Setup
from verification.compare import Judgement, Measurement, judge_claim
from verification.rescoring import MAX_LISTED_FLIPS, NotRescorable, RescoreOutcome
from verification.vocabulary import NOT_COMPARABLE, UNCLAIMED
from workers.storage import record_from_row

# Flags whose evidence is the measurement itself: a re-scoring can make them stand or fall.
MEASUREMENT_FLAGS = (Flag.Kind.SCORE_MISMATCH, Flag.Kind.INVALID_RUN)


class RescoreError(ValueError):
    """A re-scoring request that cannot be carried out (unknown benchmark, ...)."""


@dataclass
class RescoreItem:
    """What re-scoring did (or, in a dry run, would do) to one run's result."""

    run_id: int
    model: str
    setup_key: str
    old_version: str
    new_version: str
    outcome: RescoreOutcome | None = None
    skipped: str = ""  # why this result was not re-scored
    verdict_before: str = ""
    verdict_after: str = ""
    log: RescoreLog | None = None
    flag_actions: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        head = f"{self.model} (run {self.run_id}) v{self.old_version} -> v{self.new_version}"
        if self.outcome is None:
            return f"{head}: skipped, {self.skipped}"
        o = self.outcome
        return (f"{head}: {o.became_correct} item(s) now right, {o.became_wrong} now wrong, unparsed "
                f"{o.unparsed_before} -> {o.unparsed_after}, measured {o.outcome.measured:.1f}; "
                f"verdict {self.verdict_before} -> {self.verdict_after}"
                + (f"; flags: {', '.join(a['action'] for a in self.flag_actions)}" if self.flag_actions else ""))


def check_benchmark(slug: str) -> BenchmarkSpec:
    try:
        return registry.get(slug)
    except (KeyError, ValueError):
        raise RescoreError(f"Unknown benchmark {slug[:64]!r}.") from None


def results_to_rescore(spec: BenchmarkSpec) -> QuerySet:
    """The latest result per (run, setup) of finished runs scored by another version than the
    spec's current one, where no result of the current version exists yet."""
    current = BenchmarkResult.objects.filter(
        run_id=OuterRef("run_id"), benchmark=spec.slug, setup_key=OuterRef("setup_key"),
        benchmark_version=spec.version,
    )
    newer = BenchmarkResult.objects.filter(
        run_id=OuterRef("run_id"), benchmark=spec.slug, setup_key=OuterRef("setup_key"), id__gt=OuterRef("id")
    )
    return (
        BenchmarkResult.objects.filter(benchmark=spec.slug, run__status=EvaluationRun.Status.DONE)
        .exclude(benchmark_version=spec.version)
        .exclude(Exists(current))
        .exclude(Exists(newer))
        .select_related("run", "run__submission")
        .order_by("run_id", "id")
    )


def do_rescore_benchmark(
    slug: str, *, dry_run: bool = False, datasets_dir: str | Path | None = None,
    spec: BenchmarkSpec | None = None, progress: Callable[[RescoreItem], None] | None = None,
) -> list[RescoreItem]:
    """Re-score every stored output of `slug` scored by an older version (see module docstring).
    `spec` defaults to the registry's current one; a dry run computes and writes nothing."""
    spec = spec or check_benchmark(slug)
    if spec.slug != slug:
        raise RescoreError(f"The spec is {spec.slug!r}, not {slug!r}.")
    data_dir = Path(datasets_dir or settings.DATASETS_DIR)
    items = []
    for old in results_to_rescore(spec):
        item = _rescore_one(spec, old, data_dir, dry_run)
        items.append(item)
        if progress:
            progress(item)
    return items


def _rescore_one(spec: BenchmarkSpec, old: BenchmarkResult, data_dir: Path, dry_run: bool) -> RescoreItem:
    item = RescoreItem(old.run_id, old.run.model_repo, old.setup_key, old.benchmark_version, spec.version,
                       verdict_before=old.verdict)
    if old.private:
        item.skipped = "a held-out set's outputs are not stored"
        return item
    rows = list(SampleResult.objects.filter(run_id=old.run_id, benchmark=old.benchmark, setup_key=old.setup_key)
                .order_by("index"))
    if len(rows) != old.n:
        item.skipped = f"{len(rows)} stored samples for {old.n} items"
        return item
    try:
        item.outcome = rescoring.rescore_records(
            spec, Setup.from_dict(old.setup or {}), [record_from_row(r) for r in rows],
            old_version=old.benchmark_version, datasets_dir=data_dir,
        )
    except (NotRescorable, ValueError) as error:
        item.skipped = str(error)
        return item
    judgement = _judgement(old, _measurement(old, item.outcome))
    item.verdict_after = judgement.verdict
    if not dry_run:
        with transaction.atomic():
            # Two re-scorings at once: the second waits on the row lock, then finds the first's
            # result and leaves it alone.
            BenchmarkResult.objects.select_for_update().filter(pk=old.pk).first()
            if BenchmarkResult.objects.filter(run_id=old.run_id, benchmark=old.benchmark, setup_key=old.setup_key,
                                              benchmark_version=spec.version).exists():
                item.outcome, item.skipped = None, f"already re-scored with v{spec.version}"
                return item
            _store(old, rows, item, judgement)
    return item


def _measurement(old: BenchmarkResult, result: RescoreOutcome) -> Measurement:
    o = result.outcome
    return Measurement(
        benchmark=old.benchmark, version=result.new_version, setup=dict(old.setup or {}), measured=o.measured,
        ci_low=o.ci_low, ci_high=o.ci_high, n=o.n, n_errors=o.n_errors, n_unparsed=o.n_unparsed, se=o.se,
        dataset_hash=o.dataset_hash, item_correct={r.index: r.correct for r in result.records},
        metrics=dict(o.metrics),
    )


def _judgement(old: BenchmarkResult, m: Measurement) -> Judgement:
    """The claim the old result was judged against, judged again on the new measurement; a claim
    measured under another setup stays not comparable."""
    judgement = judge_claim(old.claimed, m)
    if old.claimed is None and old.verdict == NOT_COMPARABLE and judgement.verdict == UNCLAIMED:
        return Judgement(NOT_COMPARABLE, None, None)
    return judgement


def _store(old: BenchmarkResult, rows: list[SampleResult], item: RescoreItem, judgement: Judgement) -> None:
    result = item.outcome
    assert result is not None
    o = result.outcome
    new = BenchmarkResult.objects.create(
        run_id=old.run_id, benchmark=old.benchmark, benchmark_version=result.new_version, setup=old.setup,
        setup_key=old.setup_key, private=old.private, measured=o.measured, ci_low=o.ci_low, ci_high=o.ci_high,
        n=o.n, n_errors=o.n_errors, n_unparsed=o.n_unparsed, claimed=old.claimed, z=judgement.z,
        verdict=judgement.verdict, dataset_hash=old.dataset_hash or o.dataset_hash,
        metrics={**o.metrics, "se": o.se, "rescored_from": old.benchmark_version},
    )
    _update_samples(rows, result)
    run = old.run
    if run.submission_id is not None and run.role == EvaluationRun.Role.SUBMISSION:
        item.flag_actions = _reevaluate_flags(old, new, judgement)
    item.log = RescoreLog.objects.create(
        run_id=old.run_id, submission_id=run.submission_id, benchmark=old.benchmark, setup_key=old.setup_key,
        old_version=old.benchmark_version, new_version=result.new_version, old_result=old, new_result=new,
        n=o.n, became_correct=result.became_correct, became_wrong=result.became_wrong,
        unparsed_before=result.unparsed_before, unparsed_after=result.unparsed_after,
        measured_before=old.measured, measured_after=o.measured, verdict_before=old.verdict,
        verdict_after=judgement.verdict, flipped=[flip.as_dict() for flip in result.flips[:MAX_LISTED_FLIPS]],
        flag_actions=item.flag_actions,
    )
    if run.submission is not None:
        do_refresh_leaderboard_entry(run.submission)


def _update_samples(rows: list[SampleResult], result: RescoreOutcome) -> None:
    """Per-sample rows take the new scoring; each changed one keeps its previous scoring."""
    before = [record_from_row(row) for row in rows]
    by_index = {row.index: row for row in rows}
    changed = []
    for old, new in result.changed_records(before):
        row = by_index[old.index]
        previous = {"version": result.old_version, "correct": old.correct, "score": old.score,
                    "extracted": old.extracted, "unparsed": old.unparsed}
        row.correct, row.score, row.extracted = bool(new.correct) and not new.error, new.score, new.extracted
        row.unparsed, row.error = new.unparsed, new.error
        row.details = {**(new.details or {}), "rescored_from": previous}
        changed.append(row)
    SampleResult.objects.bulk_update(changed, ["correct", "score", "extracted", "unparsed", "error", "details"],
                                     batch_size=1000)


def _reevaluate_flags(old: BenchmarkResult, new: BenchmarkResult, judgement: Judgement) -> list[dict[str, Any]]:
    """Raise what the judge raises now; resolve this run's measurement flags that no longer hold."""
    run = old.run
    submission = run.submission
    actions: list[dict[str, Any]] = []
    if judgement.flag is not None:
        flag = do_raise_flag(submission, run, judgement.flag)
        actions.append({"flag": flag.pk, "kind": flag.kind, "action": "raised or seen again"})
    still = judgement.flag["kind"] if judgement.flag is not None else None
    if latest_finished_run(submission) != run:
        return actions  # a later run's findings are that run's to settle
    standing = Flag.objects.select_for_update().filter(
        Q(run_id=run.id) | Q(run__isnull=True), submission=submission, benchmark=old.benchmark,
        kind__in=MEASUREMENT_FLAGS, status__in=STANDING,
    )
    for flag in standing.order_by("id"):
        if flag.kind == still or Flag.Status.RESOLVED not in TRANSITIONS[flag.status]:
            continue
        actions.append(_resolve(flag, old, new))
    return actions


def _resolve(flag: Flag, old: BenchmarkResult, new: BenchmarkResult) -> dict[str, Any]:
    reason = (f"Re-scored the stored outputs with {new.benchmark} v{new.benchmark_version} (was "
              f"v{old.benchmark_version}): measured {new.measured:.1f} [{new.ci_low:.1f}, {new.ci_high:.1f}], "
              f"verdict {new.verdict}; the {flag.kind} finding no longer holds.")
    current = flag.status
    flag.status, flag.decision_reason = Flag.Status.RESOLVED, reason
    flag.save(update_fields=["status", "decision_reason", "updated_at"])
    event = FlagEvent.objects.create(
        flag=flag, actor=None, action=FlagEvent.Action.RESOLVED, from_status=current,
        to_status=Flag.Status.RESOLVED, message=reason,
        data={"rescore": {"old_result": old.pk, "new_result": new.pk, "verdict": new.verdict}},
    )
    transaction.on_commit(lambda: notifications.do_notify_flag_decided(flag, event), robust=True)
    return {"flag": flag.pk, "kind": flag.kind, "action": "resolved"}
