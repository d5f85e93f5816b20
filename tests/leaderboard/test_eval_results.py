"""The `.eval_results` export and the submit form's reader, against the Hub's documented Eval
Results format (huggingface.co/docs/hub/eval-results; hub-docs `eval_results.yaml`): a YAML list
of entries, each with `dataset.id` and `dataset.task_id` (required), `value` (required), and
optional `dataset.revision`, `verifyToken`, `date` (ISO-8601), `source` (`url` required when
present, `name`, `user`) and `notes`.

Round trip: the export, put in a repository in the real HF cache layout as
`.eval_results/verity.yaml`, is read back by the card-claims reader as the measured values."""

from __future__ import annotations

from datetime import datetime

import pytest
import yaml
from django.test import Client

from leaderboard.models import BenchmarkResult
from leaderboard.services.card_claims import _eval_results_claims, read_card_claims
from leaderboard.services.eval_results import HUB_BENCHMARKS
from tests.browser.site_data import install_card_repo, publish

pytestmark = pytest.mark.django_db

ENTRY_KEYS = {"dataset", "value", "verifyToken", "date", "source", "notes"}
DATASET_KEYS = {"id", "task_id", "revision"}
SOURCE_KEYS = {"url", "name", "user"}
# Measured values spanning the scale: a value at most 1 point must not read back as a fraction.
SCORES = {"gsm8k": (1, 200), "mmlu": (61, 100), "arc_challenge": (7, 10), "truthfulqa_mc1": (3, 10),
          "truthfulqa_mc2": (9, 10), "humaneval": (5, 8)}


def export(repo_id: str) -> tuple[str, list[dict]]:
    org, name = repo_id.split("/")
    response = Client().get(f"/api/models/{org}/{name}/eval_results.yaml")
    assert response.status_code == 200, response.content
    text = response.content.decode()
    return text, yaml.safe_load(text)


def assert_documented_shape(entries: list[dict], source_prefix: str) -> None:
    assert isinstance(entries, list) and entries
    for entry in entries:
        assert set(entry) <= ENTRY_KEYS and {"dataset", "value"} <= set(entry)
        assert set(entry["dataset"]) <= DATASET_KEYS and {"id", "task_id"} <= set(entry["dataset"])
        assert entry["dataset"]["id"].count("/") == 1 and not entry["dataset"]["id"].startswith("verity/")
        assert isinstance(entry["value"], float) and 0 <= entry["value"] <= 100
        datetime.fromisoformat(entry["date"])
        assert set(entry["source"]) <= SOURCE_KEYS and entry["source"]["url"].startswith(source_prefix)
        assert entry["source"]["name"]


def test_the_export_follows_the_documented_format_with_the_verifiers_url():
    submission = publish("acme/exported", SCORES)
    _, entries = export("acme/exported")
    assert_documented_shape(entries, f"http://testserver/models/acme/exported/?submission={submission.pk}")
    pairs = [(e["dataset"]["id"], e["dataset"]["task_id"]) for e in entries]
    assert len(pairs) == len(set(pairs)) == len(SCORES)  # one entry per benchmark, none ambiguous
    by_pair = {(e["dataset"]["id"], e["dataset"]["task_id"]): e for e in entries}
    assert by_pair[("openai/gsm8k", "gsm8k")]["value"] == 0.5  # the registered Hub benchmark's task id
    assert by_pair[("truthfulqa/truthful_qa", "mc1")]["value"] == 30.0
    assert by_pair[("truthfulqa/truthful_qa", "mc2")]["value"] == 90.0
    assert "95% CI" in by_pair[("cais/mmlu", "all")]["notes"]


def test_private_invalid_and_unmapped_results_are_not_exported():
    submission = publish("acme/mixed", {"gsm8k": (7, 10), "private_gsm8k": (6, 10), "mmlu": (5, 10),
                                        "gpqa": (3, 10)}, private=("private_gsm8k",))
    run = submission.runs.get()
    BenchmarkResult.objects.filter(run=run, benchmark="mmlu").update(verdict="invalid")
    text, entries = export("acme/mixed")
    assert [(e["dataset"]["id"], e["value"]) for e in entries] == [("openai/gsm8k", 70.0)]
    assert "private" not in text and "gpqa" not in text.lower()


def test_the_export_round_trips_through_the_card_claims_reader(hf_cache, tmp_path):
    publish("acme/roundtrip", SCORES)
    text, _ = export("acme/roundtrip")
    install_card_repo(hf_cache, tmp_path, "acme/roundtrip", readme="# no model-index\n", eval_results=None,
                      extra={".eval_results/verity.yaml": text})
    claims = read_card_claims("acme/roundtrip", "main")
    measured = {slug: round(100 * correct / n, 2) for slug, (correct, n) in SCORES.items()}
    assert {c.benchmark: c.score for c in claims} == pytest.approx(measured)
    assert {c.source for c in claims} == {".eval_results/verity.yaml"}


def test_the_safety_rates_export_as_tasks_of_xstest_and_never_become_claims():
    entries = _eval_results_claims({".eval_results/x.yaml": yaml.safe_dump([
        {"dataset": {"id": "Paul/XSTest", "task_id": "refusal_unsafe"}, "value": 96.0},
        {"dataset": {"id": "Paul/XSTest", "task_id": "refusal_safe"}, "value": 4.0},
    ])})
    assert entries == []


def test_the_reader_takes_the_documented_examples_and_older_task_names():
    """The Hub's documented minimal example (GPQA as a fraction), cards written before the
    export's task ids (GSM8K's config `main`, ARC's config names), and what must not match."""
    found = _eval_results_claims({
        ".eval_results/a.yaml": "- dataset:\n    id: openai/gsm8k\n    task_id: main\n  value: 0.715\n",
        ".eval_results/b.yaml": yaml.safe_dump([
            {"dataset": {"id": "allenai/ai2_arc", "task_id": "ARC-Easy"}, "value": 88.0},
            {"dataset": {"id": "truthfulqa/truthful_qa", "task_id": "multiple_choice_mc2"}, "value": 0.5},
            {"dataset": {"id": "cais/mmlu", "task_id": "all"}, "value": 0.9,
             "source": {"url": "https://example.org/evals", "name": "Eval logs"}, "notes": "5-shot"},
        ]),
        ".eval_results/c.yaml": "- dataset:\n    id: Idavidrein/gpqa\n    task_id: gpqa_diamond\n  value: 0.412\n",
    })
    got = {(c.benchmark, c.source): c.score for c in found}
    assert got[("gsm8k", ".eval_results/a.yaml")] == pytest.approx(71.5)
    # b.yaml states points (88.0), so its 0.5 and 0.9 are points too, not fractions.
    assert got[("truthfulqa_mc2", ".eval_results/b.yaml")] == pytest.approx(0.5)
    assert got[("mmlu", ".eval_results/b.yaml")] == pytest.approx(0.9)
    assert not any(benchmark == "arc_challenge" for benchmark, _ in got)  # ARC-Easy is not ARC-Challenge
    assert ("gpqa", ".eval_results/c.yaml") not in got  # GPQA's Hub dataset is not one Verity maps


def test_every_exported_pair_reads_back_as_its_own_benchmark():
    for slug, hub in HUB_BENCHMARKS.items():
        text = yaml.safe_dump([{"dataset": {"id": hub.dataset_id, "task_id": hub.task_id}, "value": 42.0}])
        [claim] = _eval_results_claims({".eval_results/one.yaml": text})
        assert claim.benchmark == slug


def test_the_form_offers_claims_from_both_eval_results_and_model_index(hf_cache, tmp_path):
    """Both sources in one repository (HF cache layout); for a benchmark in both, the
    `.eval_results` value (the Hub's current format) is the one offered."""
    card = """---
model-index:
- name: both
  results:
  - task: {type: text-generation}
    dataset: {name: GSM8K, type: openai/gsm8k}
    metrics:
    - {type: acc, value: 0.5}
  - task: {type: text-generation}
    dataset: {name: ARC, type: allenai/ai2_arc, config: ARC-Challenge}
    metrics:
    - {type: acc, value: 0.55}
---
"""
    install_card_repo(hf_cache, tmp_path, "acme/both", readme=card,
                      eval_results="- dataset:\n    id: openai/gsm8k\n    task_id: gsm8k\n  value: 71.5\n")
    claims = {c.benchmark: (c.score, c.source) for c in read_card_claims("acme/both", "main")}
    assert claims == {"gsm8k": (71.5, ".eval_results/gsm8k.yaml"), "arc_challenge": (55.0, "model-index")}


@pytest.mark.parametrize("value", [True, "nan", "inf", "1e309", -0.5, 100.5, "eighty", None, [1], {"v": 1}])
def test_values_that_are_no_score_offer_nothing(value):
    text = yaml.safe_dump([{"dataset": {"id": "openai/gsm8k", "task_id": "gsm8k"}, "value": value}])
    assert _eval_results_claims({".eval_results/bad.yaml": text}) == []
