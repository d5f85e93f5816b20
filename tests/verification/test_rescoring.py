"""Re-scoring stored outputs with a changed extractor, in the engine (no Django)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.fixtures_rescoring import SETUP, LenientGSM8K, gold_numbers, outputs_for, stored_records
from verification.benchmarks.gsm8k import GSM8KSpec
from verification.config import default_datasets_dir
from verification.rescoring import NotRescorable, rescore_records

DATASETS = str(default_datasets_dir())
PLAN = "HAAWwxHA"  # 2 right, 3 right-but-unparsed under v1, 1 wrong, 1 wrong-unparsed, 1 empty-ish


@pytest.fixture(scope="module")
def records():
    return stored_records(outputs_for(gold_numbers(DATASETS, len(PLAN)), PLAN), DATASETS)


def test_changed_extractor_flips_exactly_the_expected_items(records):
    assert sum(r.correct for r in records) == 2 and sum(r.unparsed for r in records) == 5
    result = rescore_records(LenientGSM8K(), SETUP, records, old_version="1", datasets_dir=DATASETS)
    assert result.new_version == "2-lenient" and result.old_version == "1"
    assert [flip.index for flip in result.flips] == [1, 2, 7]
    assert result.became_correct == 3 and result.became_wrong == 0
    assert (result.unparsed_before, result.unparsed_after) == (5, 1)
    assert result.outcome.measured == pytest.approx(100 * 5 / 8)
    assert result.outcome.ci_low < result.outcome.measured < result.outcome.ci_high
    # The outputs are the stored ones, never regenerated.
    assert [r.output for r in result.records] == [r.output for r in records]


def test_same_version_rescoring_changes_nothing(records):
    result = rescore_records(GSM8KSpec(), SETUP, records, old_version="1", datasets_dir=DATASETS)
    assert result.flips == [] and result.changed_records(records) == []
    assert result.outcome.measured == pytest.approx(100 * 2 / 8)


def test_harness_errors_stay_errors(records):
    broken = [dataclasses.replace(records[1], error="backend timeout", correct=False, output="")] + records[2:]
    result = rescore_records(LenientGSM8K(), SETUP, broken, old_version="1", datasets_dir=DATASETS)
    errored = [r for r in result.records if r.error]
    assert [r.index for r in errored] == [1] and result.outcome.n_errors == 1
    assert [flip.index for flip in result.flips] == [2, 7]


def test_changed_prompt_is_not_rescorable(records):
    tampered = [dataclasses.replace(records[0], prompt="Question: something else\nAnswer:")] + records[1:]
    with pytest.raises(NotRescorable, match="prompt of item 0 changed"):
        rescore_records(LenientGSM8K(), SETUP, tampered, old_version="1", datasets_dir=DATASETS)


def test_items_not_in_the_dataset_are_not_rescorable(records):
    moved = [dataclasses.replace(records[0], item_id="not-this-item")] + records[1:]
    with pytest.raises(NotRescorable, match="not in the current dataset"):
        rescore_records(LenientGSM8K(), SETUP, moved, old_version="1", datasets_dir=DATASETS)


def test_loglikelihood_benchmarks_are_not_rescorable(records):
    from verification.benchmarks.mmlu import MMLUSpec

    with pytest.raises(NotRescorable, match="log-likelihoods"):
        rescore_records(MMLUSpec(), SETUP, records, old_version="1", datasets_dir=DATASETS)
