"""Canary, verification side: a unique string planted in a private held-out item must not surface
in the records as redacted for storage (`redact_sample`), the benchmark outcome, the contamination
section and flags, the rendered contamination include, or any log line. The pipeline's own
storage path, pages, API, exports and Redis are covered by tests/workers/test_private_canary.py."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from tests.verification.contamination.conftest import MEMORIZED, PROBE_KW
from verification import private_sets
from verification.benchmarks import registry
from verification.contamination import check_contamination
from verification.benchmarks.base import Setup
from verification.runner import run_benchmark

N_PRIVATE = 6


def private_gsm_file(canary: str) -> bytes:
    rows = []
    for i in range(N_PRIVATE):
        question = f"Tomas packs {3 + i} boxes with 4 cups each. How many cups are packed?"
        if i == 3:
            question = f"{canary} {question} {canary}"
        rows.append({"id": f"{canary}-id-{i}" if i == 3 else str(i),
                     "question": question, "answer": f"{3 + i}*4=<<{3 + i}*4={12 + 4 * i}>>{12 + 4 * i}\n#### {12 + 4 * i}"})
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def canary() -> str:
    return f"CANARY-{uuid.uuid4().hex}"


def test_private_canary_never_leaves_the_store(
    canary, tmp_path, caplog, request, contamination_models, tiny_base, datasets_dir
):
    from django.template.loader import render_to_string

    from verification.backends import make_backend

    caplog.set_level(logging.DEBUG)
    store = tmp_path / "private"
    stored = private_sets.store("private_canary", "gsm8k", private_gsm_file(canary), directory=store)
    registry.register(private_sets.spec_for("private_canary", directory=store), replace=True)
    request.addfinalizer(lambda: registry.unregister("private_canary"))  # registered for this test only
    assert canary.encode() in stored.path.read_bytes()  # the canary really is in the set

    # Evaluate the private set like any benchmark, with a real backend on the memorizer; the
    # pipeline persists only redacted records (what on_records receives is what it would store).
    spec = private_sets.spec_for("private_canary", directory=store)
    persisted = []
    backend = make_backend("transformers", str(contamination_models["memorizer"].path), dtype="float32",
                           max_model_len=1024)
    try:
        outcome = run_benchmark(
            spec, backend, datasets_dir=datasets_dir, setup=Setup(shots=0),
            on_records=lambda records: persisted.extend(private_sets.redact_sample(r) for r in records),
        )
    finally:
        backend.close()
    assert outcome.n == N_PRIVATE and len(persisted) == N_PRIVATE
    assert canary in json.dumps([s.as_dict() for s in outcome.samples])  # raw records do hold it…
    stored_rows = json.dumps([r.as_dict() for r in persisted])
    aggregate = json.dumps(outcome.as_dict(include_samples=False))
    assert canary not in stored_rows  # …the persisted ones do not
    assert canary not in aggregate

    # Contamination evidence with the private set as a held-out set (and even if someone asks
    # to probe it directly, it is not probed item by item).
    section, flags = check_contamination(
        contamination_models["memorizer"].path, tiny_base.path, datasets_dir=datasets_dir,
        public_outcomes={"gsm8k": {"n": MEMORIZED, "correct": 0}},
        heldout_outcomes={"private_canary": {"model": [s.score for s in persisted]}},
        benchmarks=["gsm8k", "private_canary"], **PROBE_KW,
    )
    assert "private_canary" not in section["benchmarks_probed"]
    [pair] = section["methods"]["heldout_gap"]["pairs"]
    assert pair["heldout"] == "private_canary" and pair["private"] and pair["model"]["heldout"]["n"] == N_PRIVATE
    html = render_to_string("includes/contamination.html", {"section": section})
    assert "private_canary" in html and "private" in html

    for where, text in {
        "section": json.dumps(section), "flags": json.dumps(flags), "page": html, "logs": caplog.text,
        "stored records": stored_rows, "outcome": aggregate,
    }.items():
        assert canary not in text, f"canary leaked into {where}"
