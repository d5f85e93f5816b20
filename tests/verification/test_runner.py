"""The runner's measurement rules: errors vs unparsed, invalid runs, chunked batching, resume."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pytest

from verification.backends.base import Backend
from verification.backends.reference import FaultyBackend, NullBackend, OracleBackend
from verification.benchmarks import registry
from verification.benchmarks.base import ItemScore, Setup, UnsupportedSetup
from verification.benchmarks.gsm8k import GSM8KSpec
from verification.records import ChoiceScores, GenerationRequest
from verification.report import to_json_safe as json_safe
from verification.runner import run_benchmark


class CountingBackend(Backend):
    """Delegates to another backend and records the size of every call."""

    name = "counting"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: list[list] = []

    def generate(self, requests, progress=None):
        self.calls.append(list(requests))
        return self.inner.generate(requests)

    def loglikelihood(self, requests, progress=None):
        self.calls.append(list(requests))
        return self.inner.loglikelihood(requests)

    def choice_logprobs(self, requests, progress=None):
        self.calls.append(list(requests))
        return self.inner.choice_logprobs(requests)


@pytest.fixture(scope="module")
def gsm8k():
    return registry.get("gsm8k")


@pytest.fixture(scope="module")
def gsm8k_oracle_60(gsm8k, datasets_dir):
    return OracleBackend(gsm8k, datasets_dir=datasets_dir, limit=60)


def test_chunks_go_to_the_backend_in_one_call_each_and_are_reported(gsm8k, gsm8k_oracle_60, datasets_dir):
    backend = CountingBackend(gsm8k_oracle_60)
    persisted, progress = [], []
    outcome = run_benchmark(gsm8k, backend, limit=60, datasets_dir=datasets_dir, chunk_size=25,
                            on_records=lambda recs: persisted.append([r.index for r in recs]),
                            progress=lambda done, total: progress.append((done, total)))
    assert [len(c) for c in backend.calls] == [25, 25, 10]
    assert persisted == [list(range(0, 25)), list(range(25, 50)), list(range(50, 60))]
    assert progress[0] == (0, 60) and progress[-1] == (60, 60)
    assert (outcome.n, outcome.measured, outcome.n_errors, outcome.n_unparsed) == (60, 100.0, 0, 0)
    assert outcome.ci_high == 100.0 and outcome.ci_low < 100.0  # a real interval at 100%
    assert outcome.metrics["exact_match_flexible"] == 100.0
    sample = outcome.samples[0]
    assert sample.prompt.endswith("Answer:") and sample.prompt.count("Question:") == 6  # 5-shot
    assert sample.gold == "18" and sample.extracted == "18" and sample.output
    assert outcome.sampling["temperature"] == 0.0 and "Question:" in outcome.sampling["stop"]
    json.dumps(outcome.as_dict(), allow_nan=False)


def test_resume_skips_done_items_and_merges_them(gsm8k, gsm8k_oracle_60, datasets_dir):
    first = run_benchmark(gsm8k, gsm8k_oracle_60, limit=60, datasets_dir=datasets_dir)
    done = {r.index: r for r in first.samples[:40]}
    backend = CountingBackend(gsm8k_oracle_60)
    resumed = run_benchmark(gsm8k, backend, limit=60, datasets_dir=datasets_dir, done=done)
    assert sum(len(c) for c in backend.calls) == 20
    assert [s.index for s in resumed.samples] == list(range(60))
    assert resumed.samples[:40] == first.samples[:40]
    assert resumed.measured == 100.0 and resumed.dataset_hash == first.dataset_hash


def test_backend_errors_count_as_errors_and_invalidate_above_one_percent(gsm8k, gsm8k_oracle_60, datasets_dir):
    outcome = run_benchmark(gsm8k, FaultyBackend(gsm8k_oracle_60, "error", every=10), limit=60,
                            datasets_dir=datasets_dir)
    assert outcome.n_errors == 6 and outcome.n_unparsed == 0
    assert outcome.measured == pytest.approx(90.0)
    assert outcome.invalid
    errored = [s for s in outcome.samples if s.error]
    assert all(not s.correct and s.score == 0.0 for s in errored)


def test_error_rate_of_exactly_one_percent_is_still_valid(gsm8k, datasets_dir):
    oracle = OracleBackend(gsm8k, datasets_dir=datasets_dir, limit=200)
    at_limit = run_benchmark(gsm8k, FaultyBackend(oracle, "error", every=100), limit=200, datasets_dir=datasets_dir)
    assert at_limit.n_errors == 2 and not at_limit.invalid
    above = run_benchmark(gsm8k, FaultyBackend(oracle, "error", every=66), limit=200, datasets_dir=datasets_dir)
    assert above.n_errors == 4 and above.invalid


def test_raising_backend_and_timeout_are_errors(gsm8k, gsm8k_oracle_60, datasets_dir):
    raised = run_benchmark(gsm8k, FaultyBackend(gsm8k_oracle_60, "raise"), limit=20, datasets_dir=datasets_dir)
    assert raised.n_errors == 20 and raised.measured == 0.0 and raised.invalid
    assert "injected backend failure" in raised.samples[0].error
    hung = run_benchmark(gsm8k, FaultyBackend(gsm8k_oracle_60, "hang", hang_s=2.0), limit=20,
                         datasets_dir=datasets_dir, chunk_size=10, call_timeout_s=0.3)
    assert hung.n_errors == 20 and hung.invalid
    assert hung.samples[0].error.startswith("timeout")


def test_empty_and_unextractable_outputs_are_unparsed_not_errors(gsm8k, gsm8k_oracle_60, datasets_dir):
    empty = run_benchmark(gsm8k, FaultyBackend(gsm8k_oracle_60, "empty", every=4), limit=40, datasets_dir=datasets_dir)
    assert (empty.n_unparsed, empty.n_errors, empty.invalid) == (10, 0, False)
    assert empty.measured == pytest.approx(75.0)
    garbage = run_benchmark(gsm8k, FaultyBackend(gsm8k_oracle_60, "garbage", every=2), limit=40, datasets_dir=datasets_dir)
    assert (garbage.n_unparsed, garbage.n_errors) == (20, 0)
    unparsed = [s for s in garbage.samples if s.unparsed]
    assert all(not s.correct and s.score == 0.0 and s.extracted is None for s in unparsed)


def test_null_model_is_measured_honestly_at_zero(gsm8k, datasets_dir):
    outcome = run_benchmark(gsm8k, NullBackend(seed=1), limit=50, datasets_dir=datasets_dir)
    assert outcome.measured == 0.0 and outcome.n_unparsed == 50 and not outcome.invalid
    assert outcome.ci_low == 0.0 and outcome.ci_high > 5.0


class ExplodingScorer(GSM8KSpec):
    """GSM8K whose scorer crashes on every fifth item (a scorer bug must never score)."""

    def score(self, item, requests, responses) -> ItemScore:
        if item.index % 5 == 0:
            raise RuntimeError("scorer bug")
        return super().score(item, requests, responses)


def test_scorer_exception_is_an_error_for_that_item_only(gsm8k_oracle_60, datasets_dir):
    outcome = run_benchmark(ExplodingScorer(), gsm8k_oracle_60, limit=30, datasets_dir=datasets_dir)
    assert outcome.n_errors == 6 and outcome.invalid
    assert outcome.measured == pytest.approx(80.0)
    assert all("scorer bug" in s.error for s in outcome.samples if s.index % 5 == 0)


class NonFiniteChoices(Backend):
    name = "non-finite"

    def generate(self, requests, progress=None):  # pragma: no cover - MC only
        raise NotImplementedError

    def loglikelihood(self, requests, progress=None):  # pragma: no cover - MC only
        raise NotImplementedError

    def choice_logprobs(self, requests: Sequence, progress=None):
        return [ChoiceScores([-math.inf, -math.inf, -math.inf, -math.inf]) for _ in requests]


def test_all_minus_infinity_choices_are_unparsed_and_json_safe(datasets_dir):
    outcome = run_benchmark(registry.get("mmlu"), NonFiniteChoices(), limit=5, datasets_dir=datasets_dir)
    assert outcome.n_unparsed == 5 and outcome.measured == 0.0
    text = json.dumps(outcome.as_dict(), allow_nan=False)
    assert '"logprobs": [null, null, null, null]' in text
    assert json_safe({"x": [math.nan, 1.0]}) == {"x": [None, 1.0]}


def test_unsupported_setup_is_refused_with_a_reason(datasets_dir):
    with pytest.raises(UnsupportedSetup, match="chain-of-thought"):
        run_benchmark(registry.get("mmlu"), NullBackend(), setup=Setup(5, True, False), datasets_dir=datasets_dir)


def test_chat_template_setup_reaches_the_requests(gsm8k, datasets_dir):
    backend = CountingBackend(NullBackend())
    run_benchmark(gsm8k, backend, setup=Setup(0, False, True), limit=3, datasets_dir=datasets_dir)
    assert all(isinstance(r, GenerationRequest) and r.chat for r in backend.calls[0])
    backend = CountingBackend(NullBackend())
    run_benchmark(registry.get("ifeval"), backend, limit=2, datasets_dir=datasets_dir)
    assert all(r.chat for r in backend.calls[0])  # IFEval's default setup uses the chat template


@pytest.mark.slow
def test_a_real_tiny_model_runs_through_the_real_runner(hf_tiny, datasets_dir):
    """The runner drives a real transformers backend (tiny Llama) on generative and MC sets:
    every item gets a real answer, nothing errs, and the numbers are a measurement."""
    short_gsm8k = GSM8KSpec(slug="gsm8k_short_answers", max_tokens=24)  # same prompts, short decode
    generative = run_benchmark(short_gsm8k, hf_tiny, setup=Setup(0, False, False), limit=4,
                               datasets_dir=datasets_dir)
    assert generative.n == 4 and generative.n_errors == 0 and not generative.invalid
    assert all(s.output for s in generative.samples)  # the model wrote something for every item
    assert all(s.unparsed == (s.extracted is None) for s in generative.samples)
    letters = run_benchmark(registry.get("mmlu"), hf_tiny, setup=Setup(0, False, False), limit=8,
                            datasets_dir=datasets_dir)
    assert letters.n_errors == 0 and letters.n_unparsed == 0
    assert all(len(s.details["logprobs"]) == 4 and all(math.isfinite(x) for x in s.details["logprobs"])
               for s in letters.samples)
    assert letters.ci_low <= letters.measured <= letters.ci_high
    choices = run_benchmark(registry.get("truthfulqa_mc2"), hf_tiny, limit=3, datasets_dir=datasets_dir)
    assert choices.n_errors == 0 and all(0.0 < s.score < 1.0 for s in choices.samples)
    assert choices.backend.get("backend") == "transformers"
