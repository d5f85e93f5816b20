"""Benchmark specs on the real datasets: registry contract, loading, guards (oracle = 100%,
null = chance), runtime registration and the hub path."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from verification import datasets as vd
from verification.backends.reference import NullBackend, OracleBackend
from verification.benchmarks import registry
from verification.benchmarks.base import DatasetUnavailable, Setup, Subsample
from verification.benchmarks.gpqa import GPQASpec
from verification.benchmarks.gsm8k import gsm8k_style_spec
from verification.records import ChoiceScores, Loglikelihood
from verification.runner import run_benchmark
from verification.stats import wilson_interval

PUBLIC = ["gsm8k", "mmlu", "arc_challenge", "truthfulqa_mc1", "truthfulqa_mc2", "math500", "math", "humaneval", "ifeval"]
# Small but real: enough items to exercise every code path within the test-time budget.
ORACLE_LIMITS = {"humaneval": 4, "ifeval": 25, "math500": 40}


def test_registry_contract():
    slugs = {spec.slug for spec in registry.all_specs()}
    assert set(PUBLIC) | {"gpqa"} <= slugs
    for slug in PUBLIC:
        spec = registry.get(slug)
        assert spec.slug == slug and isinstance(spec.version, str) and spec.version
        assert spec.supports(spec.default_setup), slug
    with pytest.raises(KeyError, match="unknown benchmark"):
        registry.get("no_such_benchmark")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(GPQASpec())


def test_setup_key_is_canonical_json():
    setup = Setup(shots=5, cot=True, chat_template=False)
    assert setup.key() == '{"chat_template":false,"cot":true,"shots":5}'
    assert Setup.from_dict(json.loads(setup.key())) == setup
    with pytest.raises(ValueError):
        Setup.from_dict({"shots": 1, "temperature": 0.7})


def test_default_setups_follow_the_anchors():
    assert registry.get("gsm8k").default_setup == Setup(5, False, False)
    assert registry.get("mmlu").default_setup == Setup(5, False, False)
    assert registry.get("math500").default_setup == Setup(4, True, False)
    assert registry.get("ifeval").default_setup.chat_template
    arc = registry.get("arc_challenge")
    reason = arc.unsupported_reason(Setup(25, False, False))
    assert reason and "train split" in reason  # OLL's 25-shot cannot be honoured offline: said so
    assert registry.get("gsm8k").supports(Setup(8, True, False))
    assert not registry.get("humaneval").supports(Setup(0, False, True))


def test_limit_is_canonical_order_and_subsample_is_seeded(datasets_dir):
    spec = registry.get("gsm8k")
    first = spec.load(datasets_dir, limit=10)
    assert [it.index for it in first.items] == list(range(10))
    assert first.items[0].data["question"].startswith("Janet")
    assert first.source["kind"] == "local" and first.source["file_sha256"].startswith("sha256:")
    sub_a = spec.load(datasets_dir, subsample=Subsample(10, seed=3))
    sub_b = spec.load(datasets_dir, subsample=(10, 3))
    sub_c = spec.load(datasets_dir, subsample=Subsample(10, seed=4))
    assert [i.index for i in sub_a.items] == [i.index for i in sub_b.items]
    assert [i.index for i in sub_a.items] != [i.index for i in sub_c.items]
    assert sub_a.items == sorted(sub_a.items, key=lambda it: it.index)
    assert len({first.content_hash, sub_a.content_hash, sub_c.content_hash}) == 3
    assert sub_a.content_hash == sub_b.content_hash and first.total_available == 1319


@pytest.mark.parametrize("slug", PUBLIC)
def test_gold_answers_fed_back_score_100(slug, datasets_dir):
    spec = registry.get(slug)
    limit = ORACLE_LIMITS.get(slug, 30)
    oracle = OracleBackend(spec, datasets_dir=datasets_dir, limit=limit)
    outcome = run_benchmark(spec, oracle, limit=limit, datasets_dir=datasets_dir)
    assert outcome.n == limit
    if slug == "ifeval":
        # IFEval has no reference answers: the oracle builds a response per item (5 of the 541
        # prompts are unsatisfiable and get none; the oracle then errs, it never scores them).
        assert outcome.n_errors == oracle.n_without_gold == 0
        assert all(s.correct for s in outcome.samples if not s.error), [(s.item_id, s.details, s.output[:200]) for s in outcome.samples if not s.error and not s.correct]
        assert outcome.metrics["inst_level_strict_acc"] > 90.0
    else:
        assert outcome.n_errors == 0 and outcome.n_unparsed == 0
        assert outcome.measured == 100.0, [s for s in outcome.samples if not s.correct][:1]


@pytest.mark.parametrize("slug,setup", [("gsm8k", Setup(8, True, False)), ("math500", Setup(0, True, True)),
                                        ("mmlu", Setup(0, False, False))])
def test_gold_scores_100_under_claimed_setups(slug, setup, datasets_dir):
    spec = registry.get(slug)
    oracle = OracleBackend(spec, datasets_dir=datasets_dir, setup=setup, limit=10)
    outcome = run_benchmark(spec, oracle, setup=setup, limit=10, datasets_dir=datasets_dir)
    assert outcome.measured == 100.0 and outcome.setup == setup.as_dict()


def _chance_rate(spec, items) -> float:
    return sum(1.0 / len(spec.choices(item)) if hasattr(spec, "choices") else 0.25 for item in items) / len(items)


@pytest.mark.parametrize("slug,limit", [("mmlu", 600), ("arc_challenge", 600), ("truthfulqa_mc1", 817)])
def test_null_model_scores_at_chance_on_multiple_choice(slug, limit, datasets_dir):
    spec = registry.get(slug)
    outcome = run_benchmark(spec, NullBackend(seed=0), limit=limit, datasets_dir=datasets_dir)
    items = spec.load(datasets_dir, limit=limit).items
    chance = 100.0 * _chance_rate(spec, items)
    assert outcome.n_errors == 0 and outcome.n_unparsed == 0
    assert outcome.ci_low <= chance <= outcome.ci_high, (outcome.measured, chance)


def test_equal_scores_for_every_choice_are_never_credited(datasets_dir):
    """A model with no preference gets no answer extracted, not the first choice (TruthfulQA MC1
    lists the true answer first in every item, so "first wins" would score it 100%)."""

    class EqualScores(NullBackend):
        def loglikelihood(self, requests, progress=None):
            return [Loglikelihood(logprob=-1.0, n_chars=len(r.continuation)) for r in requests]

    for slug, backend in (("mmlu", NullBackend(mode="constant")), ("truthfulqa_mc1", EqualScores())):
        outcome = run_benchmark(registry.get(slug), backend, setup=Setup(0, False, False), limit=50,
                                datasets_dir=datasets_dir)
        assert outcome.measured == 0.0 and outcome.n_unparsed == 50 and outcome.n_errors == 0, slug


def test_nan_log_probabilities_are_harness_errors_not_wrong_answers(datasets_dir):
    class NaNChoices(NullBackend):
        def choice_logprobs(self, requests, progress=None):
            return [ChoiceScores([math.nan] * len(r.choices)) for r in requests]

        def loglikelihood(self, requests, progress=None):
            return [Loglikelihood(logprob=math.nan if i % 2 else -1.0, n_chars=3) for i, _ in enumerate(requests)]

    for slug in ("mmlu", "truthfulqa_mc2"):
        outcome = run_benchmark(registry.get(slug), NaNChoices(), setup=Setup(0, False, False), limit=20,
                                datasets_dir=datasets_dir)
        assert outcome.n_errors == 20 and outcome.invalid and outcome.measured == 0.0, slug


def test_gsm8k_style_spec_over_another_item_source(datasets_dir):
    records = [
        {"id": "fresh-1", "question": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "3 + 4 = 7\n#### 7"},
        {"id": "fresh-2", "question": "A box holds 12 eggs. How many eggs in 5 boxes?", "answer": "#### 60"},
    ]

    def loader(_datasets_dir):
        return records, {"kind": "generated", "seed": 7}

    spec = gsm8k_style_spec("gsm_fresh_test", "seed7-v1", loader)
    registry.register(spec)
    try:
        assert registry.get("gsm_fresh_test") is spec
        outcome = run_benchmark(spec, OracleBackend(spec, datasets_dir=datasets_dir), datasets_dir=datasets_dir)
        assert (outcome.n, outcome.measured, outcome.dataset_source) == (2, 100.0, {"kind": "generated", "seed": 7})
        assert [s.item_id for s in outcome.samples] == ["fresh-1", "fresh-2"]
        assert outcome.samples[1].prompt.count("Question:") == 6  # GSM8K train exemplars still used
    finally:
        registry.unregister("gsm_fresh_test")
    broken = gsm8k_style_spec("gsm_broken", "1", lambda _d: ([{"question": "q", "answer": "no number"}], {}))
    with pytest.raises(ValueError, match="####"):
        broken.load(datasets_dir)


def test_pinned_hub_dataset_file_records_its_commit(tmp_path, monkeypatch):
    # A real huggingface_hub cache layout for a dataset repo, read offline at a pinned commit.
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "hub" / "datasets--verity-test--gsm-mini"
    (repo_dir / "snapshots" / sha).mkdir(parents=True)
    rows = [{"question": "1+1?", "answer": "1+1=2\n#### 2"}, {"question": "2*3?", "answer": "#### 6"}]
    (repo_dir / "snapshots" / sha / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = vd.HubSource("verity-test/gsm-mini", "test.jsonl", revision=sha, cache_dir=str(tmp_path / "hub"))
    path, info = vd.hub_download(source)
    assert info["commit"] == sha and info["kind"] == "hub" and info["file_sha256"].startswith("sha256:")
    assert vd.read_records(path) == rows
    # A spec whose local file is absent loads the pinned hub file and records where it came from.
    from verification.benchmarks.gsm8k import GSM8KSpec

    spec = GSM8KSpec()
    spec.set_hub_source("gsm8k/test.jsonl", source)
    loaded = spec.load(tmp_path / "no_local_data")
    assert [it.data["question"] for it in loaded.items] == ["1+1?", "2*3?"]
    assert loaded.source["commit"] == sha and loaded.source["repo_id"] == "verity-test/gsm-mini"
    assert registry.get("gsm8k").hub_sources == {}  # the registered spec is untouched
    missing = vd.HubSource("verity-test/gsm-mini", "missing.jsonl", revision=sha, cache_dir=str(tmp_path / "hub"))
    with pytest.raises(DatasetUnavailable, match="verity-test/gsm-mini"):
        vd.hub_download(missing)
    with pytest.raises(DatasetUnavailable, match="not found"):
        vd.resolve_file(tmp_path / "empty", "gsm8k/test.jsonl")


def test_gpqa_runs_from_a_maintainer_csv_and_refuses_without_one(tmp_path, datasets_dir):
    data = tmp_path / "data"
    with pytest.raises(DatasetUnavailable, match="gpqa_diamond.csv"):
        GPQASpec().load(data)
    csv_path = data / "gpqa" / "gpqa_diamond.csv"  # made-up questions in the official column layout
    csv_path.parent.mkdir(parents=True)
    rows = ["Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3,Record ID"]
    rows += [f'"What is {i} + {i}?",{2 * i},{2 * i + 1},{2 * i + 2},{2 * i + 3},rec{i}' for i in range(40)]
    csv_path.write_text("\n".join(rows) + "\n")
    spec = GPQASpec()
    loaded = spec.load(data)
    golds = [it.data["gold"] for it in loaded.items]
    assert len(set(golds)) > 1  # the correct answer is not always first
    assert all(it.data["choices"][it.data["gold"]] == str(2 * int(it.item_id[3:])) for it in loaded.items)
    outcome = run_benchmark(spec, OracleBackend(spec, datasets_dir=data), datasets_dir=data)
    assert outcome.measured == 100.0 and outcome.dataset_source["kind"] == "maintainer_csv"


def test_missing_dataset_dir_gives_a_clear_error(tmp_path):
    shutil.rmtree(tmp_path, ignore_errors=True)
    with pytest.raises(DatasetUnavailable, match="not found under"):
        registry.get("gsm8k").load(tmp_path)
