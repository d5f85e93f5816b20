"""Private held-out sets: upload (management command and admin form), versioned storage outside
anything the web serves, and error messages that never show an item."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from leaderboard.models import PrivateBenchmark
from verification import private_sets


def gsm_lines(canary: str, n: int = 6) -> str:
    rows = [
        {"question": f"A baker has {10 + i} loaves and sells {i} of them. How many are left? {canary if i == 2 else ''}".strip(),
         "answer": f"{10 + i} - {i} = 10 loaves are left.\n#### 10"}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture
def private_store(settings, tmp_path) -> Path:
    settings.PRIVATE_BENCHMARKS_DIR = tmp_path / "private-store"
    return settings.PRIVATE_BENCHMARKS_DIR


@pytest.mark.django_db
def test_command_stores_a_versioned_owner_only_copy(private_store, tmp_path, capsys):
    canary = f"CANARY-{uuid.uuid4()}"
    source = tmp_path / "held.jsonl"
    source.write_text(gsm_lines(canary), encoding="utf-8")

    call_command("add_private_benchmark", "private_bakery", str(source), "--format", "gsm8k")
    out = capsys.readouterr().out
    row = PrivateBenchmark.objects.get(slug="private_bakery")
    assert row.n_items == 6 and row.format == "gsm8k" and row.public_counterpart == "gsm8k"
    assert row.version == row.content_hash[:16] and row.version in out
    assert canary not in out
    stored = Path(row.path)
    assert stored.parent.parent == private_store.resolve()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert private_sets.load_records(private_sets.info("private_bakery", directory=private_store))[2]["question"].endswith(canary)

    # Same content again: same version, no new row. Changed content: a new version.
    call_command("add_private_benchmark", "private_bakery", str(source), "--format", "gsm8k")
    assert PrivateBenchmark.objects.filter(slug="private_bakery").count() == 1
    source.write_text(gsm_lines(canary, n=7), encoding="utf-8")
    call_command("add_private_benchmark", "private_bakery", str(source), "--format", "gsm8k")
    versions = PrivateBenchmark.objects.filter(slug="private_bakery")
    assert versions.count() == 2 and len({v.content_hash for v in versions}) == 2
    assert private_sets.info("private_bakery", directory=private_store).n_items == 7

    # A tampered file is refused when loaded.
    current = private_sets.info("private_bakery", directory=private_store)
    current.path.write_text(current.path.read_text() + "\n{}", encoding="utf-8")
    with pytest.raises(private_sets.PrivateSetError, match="does not match its hash"):
        private_sets.load_records(current)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "slug, fmt, content, expected",
    [
        ("bakery", "gsm8k", None, "private_"),
        ("private_bad", "gsm8k", '{"question": "Q SECRET-TEXT", "answer": "no number SECRET-TEXT"}\n', "line 1: field 'answer'"),
        ("private_bad", "gsm8k", '{"question": "fine", "answer": "#### 3"}\n{"question": SECRET-TEXT\n', "line 2: not valid JSON"),
        ("private_bad", "mc", '{"question": "SECRET-TEXT", "choices": ["a", "b"], "answer": 5}\n', "outside the choices"),
        ("private_bad", "mc", '{"question": "SECRET-TEXT", "choices": "SECRET-TEXT", "answer": 0}\n', "field 'choices'"),
        ("private_bad", "gsm8k", "\n\n", "no items"),
    ],
)
def test_bad_input_is_refused_with_a_message_that_shows_no_item(private_store, tmp_path, slug, fmt, content, expected):
    source = tmp_path / "bad.jsonl"
    source.write_text(content if content is not None else gsm_lines("x"), encoding="utf-8")
    with pytest.raises(CommandError) as excinfo:
        call_command("add_private_benchmark", slug, str(source), "--format", fmt)
    assert expected in str(excinfo.value)
    assert "SECRET-TEXT" not in str(excinfo.value)
    assert not PrivateBenchmark.objects.exists()
    assert not any(private_store.rglob("*.jsonl")) if private_store.exists() else True


@pytest.mark.django_db
def test_store_inside_a_served_directory_is_refused(settings, tmp_path):
    settings.PRIVATE_BENCHMARKS_DIR = Path(settings.STATIC_ROOT) / "private"
    source = tmp_path / "held.jsonl"
    source.write_text(gsm_lines("x"), encoding="utf-8")
    with pytest.raises(CommandError, match="overlaps a directory the web serves"):
        call_command("add_private_benchmark", "private_bakery", str(source), "--format", "gsm8k")
    assert not PrivateBenchmark.objects.exists()


@pytest.mark.django_db
def test_admin_upload_form_stores_the_set(private_store, admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    canary = f"CANARY-{uuid.uuid4()}"
    mc = "".join(
        json.dumps({"question": f"Which is item {i}? {canary}", "choices": ["w", "x", "y", "z"], "answer": "B"}) + "\n"
        for i in range(4)
    )
    response = admin_client.post(
        "/admin/leaderboard/privatebenchmark/add/",
        {"slug": "private_quiz", "format": "mc", "public": "arc_challenge",
         "upload": SimpleUploadedFile("quiz.jsonl", mc.encode(), content_type="application/jsonl")},
    )
    assert response.status_code == 302, response.content[:2000]
    row = PrivateBenchmark.objects.get(slug="private_quiz")
    assert row.n_items == 4 and row.public_counterpart == "arc_challenge"
    listing = admin_client.get("/admin/leaderboard/privatebenchmark/")
    detail = admin_client.get(f"/admin/leaderboard/privatebenchmark/{row.pk}/change/")
    for page in (listing, detail):
        assert page.status_code == 200
        assert canary.encode() not in page.content
    # A bad upload re-shows the form with the line-numbered reason, not the item.
    bad = admin_client.post(
        "/admin/leaderboard/privatebenchmark/add/",
        {"slug": "private_quiz2", "format": "mc",
         "upload": SimpleUploadedFile("q.jsonl", f'{{"question": "{canary}", "choices": ["a"], "answer": 0}}\n'.encode())},
    )
    assert bad.status_code == 200 and b"line 1" in bad.content and canary.encode() not in bad.content
    assert not PrivateBenchmark.objects.filter(slug="private_quiz2").exists()


def test_private_spec_is_marked_and_redaction_drops_item_text(tmp_path):
    canary = f"CANARY-{uuid.uuid4()}"
    private_sets.store("private_bakery", "gsm8k", gsm_lines(canary).encode(), directory=tmp_path)
    spec = private_sets.spec_for("private_bakery", directory=tmp_path)
    assert spec.private is True and private_sets.is_private(spec.slug)
    loaded = spec.load(tmp_path, limit=None)
    assert canary not in json.dumps(loaded.source) and len(loaded.items) == 6
    assert not private_sets.is_private("gsm8k") and not private_sets.is_private("gsm_fresh")

    from verification.records import SampleRecord

    record = SampleRecord(2, "2", f"prompt {canary}", f"output {canary}", "10", "10", True, 1.0,
                          error=f"boom {canary}", details={"x": canary})
    kept = private_sets.redact_sample(record)
    assert canary not in json.dumps(kept.as_dict())
    assert kept.index == 2 and kept.score == 1.0 and kept.error
    assert canary not in private_sets.safe_error(ValueError(canary))
