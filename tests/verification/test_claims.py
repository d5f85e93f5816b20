"""The one claims validator used by the CLI, the form and the API."""

from __future__ import annotations

import json
import re

import pytest

from verification.claims import ClaimsError, known_benchmarks, load_claims_file, parse_claims


def test_a_full_document_is_parsed_with_types_and_setup():
    doc = parse_claims(
        {
            "base_model": "meta-llama/Llama-3.1-70B",
            "training": "lora",
            "endpoint": "http://127.0.0.1:8000/v1",
            "endpoint_model": "reflection",
            "claims": [
                {"benchmark": "GSM8K", "score": 99.2, "shots": 8, "cot": True},
                {"benchmark": "mmlu", "score": 89},
            ],
        }
    )
    assert doc.base_model == "meta-llama/Llama-3.1-70B" and doc.training == "lora"
    assert doc.by_benchmark()["gsm8k"].setup() == {"shots": 8, "cot": True}
    assert doc.by_benchmark()["mmlu"].score == 89.0 and doc.by_benchmark()["mmlu"].setup() == {}
    assert parse_claims(doc.as_dict()) == doc  # round trip


def test_only_claims_is_needed_and_defaults_are_explicit():
    doc = parse_claims({"claims": []})
    assert doc.claims == () and doc.training == "unknown" and doc.base_model is None and doc.endpoint is None


def test_every_builtin_benchmark_is_known():
    assert {"gsm8k", "mmlu", "arc_challenge"} <= set(known_benchmarks())


@pytest.mark.parametrize(
    "document, message",
    [
        ([], "must be a JSON object"),
        ({"claims": {"gsm8k": 1}}, "'claims' must be a list"),
        ({"claims": [{"benchmark": "gsm9k", "score": 50}]}, "unknown benchmark 'gsm9k'"),
        ({"claims": [{"benchmark": "gsm8k", "score": 101}]}, "outside 0–100"),
        ({"claims": [{"benchmark": "gsm8k", "score": -0.5}]}, "outside 0–100"),
        ({"claims": [{"benchmark": "gsm8k", "score": float("nan")}]}, "outside 0–100"),
        ({"claims": [{"benchmark": "gsm8k", "score": "99"}]}, "must be a number"),
        ({"claims": [{"benchmark": "gsm8k", "score": True}]}, "must be a number"),
        ({"claims": [{"benchmark": "gsm8k", "score": 50, "shots": 2.5}]}, "shots must be an integer"),
        ({"claims": [{"benchmark": "gsm8k", "score": 50, "shots": 65}]}, "shots must be an integer"),
        ({"claims": [{"benchmark": "gsm8k", "score": 50, "cot": "yes"}]}, "cot must be true or false"),
        (
            {"claims": [{"benchmark": "gsm8k", "score": 50}, {"benchmark": "gsm8k", "score": 60}]},
            "claimed twice",
        ),
        ({"claims": [{"benchmark": "gsm8k", "score": 50, "bogus": 1}]}, "unknown key(s) bogus"),
        ({"claims": [], "base_model": "not a repo"}, "not a valid Hugging Face repo id"),
        ({"claims": [], "base_model": "org--x/name"}, "not a valid Hugging Face repo id"),
        ({"claims": [], "training": "qlora"}, "'training' must be one of"),
        ({"claims": [], "endpoint": "ftp://x/v1"}, "'endpoint' must be an http(s) URL"),
        ({"claims": [], "extra": 1}, "unknown key(s) extra"),
        ({"claims": ["gsm8k"]}, "claims[0] must be an object"),
    ],
)
def test_bad_documents_are_refused_with_a_message_that_names_the_problem(document, message):
    with pytest.raises(ClaimsError) as error:
        parse_claims(document)
    assert message in str(error.value)


def test_claims_file_errors_are_claims_errors(tmp_path):
    broken = tmp_path / "claims.json"
    broken.write_text("{not json")
    with pytest.raises(ClaimsError, match="not valid JSON"):
        load_claims_file(broken)
    with pytest.raises(ClaimsError, match="cannot read claims file"):
        load_claims_file(tmp_path / "missing.json")
    broken.write_text(json.dumps({"claims": [{"benchmark": "mmlu", "score": 70.5}]}))
    assert load_claims_file(broken).by_benchmark()["mmlu"].score == 70.5


def test_heldout_sets_cannot_be_claimed():
    for slug in ("gsm_fresh", "private_gsm_2026"):
        with pytest.raises(ClaimsError, match="unknown benchmark|not"):
            parse_claims({"claims": [{"benchmark": slug, "score": 50}]})
    assert "gsm_fresh" in known_benchmarks()  # still measurable


@pytest.mark.parametrize(
    "claim, message",
    [
        ({"benchmark": "gsm8k", "score": 10**400}, "outside 0–100"),
        ({"benchmark": "gsm8k", "score": float("nan")}, "outside 0–100"),
        ({"benchmark": "gsm8k", "score": 50, "source_url": 5}, "source_url must be an http(s) URL (string)"),
        ({"benchmark": "gsm8k", "score": 50, "source_url": ["http://x"]}, "source_url must be an http(s) URL (string)"),
    ],
)
def test_hostile_claim_values_are_refused_with_a_clear_message(claim, message):
    with pytest.raises(ClaimsError, match=re.escape(message)):
        parse_claims({"claims": [claim]})
