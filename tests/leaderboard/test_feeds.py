"""The Atom feeds of flags (/feeds/flags.atom, /models/<org>/<name>/flags.atom), through the real
pages: the output is Atom as RFC 4287 defines it (checked element by element with the standard
library's XML parser; no feed validator is installed here), entries are raised and decided flags
with their public words only, and what the model page hides stays out."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import datetime

import pytest
from django.test import Client

from leaderboard.feeds import FEED_LENGTH, public_flag_events
from leaderboard.models import Flag, FlagEvent, ModelSubmission
from leaderboard.services import triage as triage_service
from leaderboard.services.flags import do_raise_flag
from tests.browser.site_data import publish
from tests.leaderboard.test_triage_fixtures import make_user
from verification.compare import make_flag

pytestmark = pytest.mark.django_db

ATOM = "{http://www.w3.org/2005/Atom}"
PRIVATE_ITEM = "PRIVATE-HELDOUT-ITEM: what is 17 * 23 in the secret set"
NOTE = "INTERNAL: their lab was banned last year"


def atom_of(response) -> ET.Element:
    """The feed document, checked against RFC 4287's required elements: feed id/title/updated,
    an author on the feed (or on every entry), a link; each entry's id/title/updated/link, ids
    unique IRIs, timestamps RFC 3339."""
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("application/atom+xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert len(root.findall(f"{ATOM}{required}")) == 1, f"feed needs exactly one {required}"
    assert _timestamp(root.findtext(f"{ATOM}updated"))
    assert root.findall(f"{ATOM}link"), "feed needs a link"
    entries = root.findall(f"{ATOM}entry")
    feed_author = root.find(f"{ATOM}author/{ATOM}name")
    ids = [root.findtext(f"{ATOM}id")]
    for entry in entries:
        for required in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{required}")) == 1, f"entry needs exactly one {required}"
        assert entry.findtext(f"{ATOM}title").strip()
        assert _timestamp(entry.findtext(f"{ATOM}updated"))
        links = entry.findall(f"{ATOM}link")
        assert links and all(link.get("href", "").startswith("http") for link in links)
        assert feed_author is not None or entry.find(f"{ATOM}author/{ATOM}name") is not None
        ids.append(entry.findtext(f"{ATOM}id"))
    assert all(":" in id_ and " " not in id_ for id_ in ids), ids  # absolute IRIs
    assert len(set(ids)) == len(ids), "atom:id values must be unique"
    return root


def _timestamp(text: str | None) -> datetime:
    assert text, "missing timestamp"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def entries_of(root: ET.Element) -> list[dict[str, str]]:
    return [
        {"id": e.findtext(f"{ATOM}id"), "title": e.findtext(f"{ATOM}title"),
         "summary": e.findtext(f"{ATOM}summary") or "", "link": e.find(f"{ATOM}link").get("href"),
         "categories": " ".join(c.get("term") for c in e.findall(f"{ATOM}category"))}
        for e in root.findall(f"{ATOM}entry")
    ]


@pytest.fixture
def flagged():
    """Two models: one with a flag raised then confirmed (with an internal note and evidence
    naming a private item), one with a raised flag still under review."""
    maintainer = make_user("milo", maintainer=True)
    acme = publish("acme/flagged", {"gsm8k": (5, 10)}, claims={"gsm8k": 90.0}, status=ModelSubmission.Status.FLAGGED)
    other = publish("other/model", {"gsm8k": (7, 10)}, status=ModelSubmission.Status.FLAGGED)
    confirmed = do_raise_flag(acme, None, make_flag(
        "score_mismatch", "critical", "claimed 90.0 on gsm8k, measured 50.0 in /var/lib/verity/runs/7",
        {"items": [PRIVATE_ITEM]}, benchmark="gsm8k"))
    triage_service.do_note(confirmed, maintainer, NOTE)
    triage_service.do_confirm(confirmed, maintainer, "The gap holds on a re-run.")
    do_raise_flag(other, None, make_flag("contamination", "warning", "n-gram overlap with gsm8k", {}, benchmark="gsm8k"))
    return {"acme": acme, "other": other, "confirmed": confirmed, "maintainer": maintainer}


def test_the_site_feed_is_atom_with_raised_and_decided_flags(flagged):
    root = atom_of(Client().get("/feeds/flags.atom"))
    entries = entries_of(root)
    titles = [e["title"] for e in entries]
    assert titles == [
        "other/model: Contamination flag raised (warning on gsm8k)",
        "acme/flagged: Score Mismatch flag confirmed (critical on gsm8k)",
        "acme/flagged: Score Mismatch flag raised (critical on gsm8k)",
    ]
    confirmed = entries[1]
    assert "State: confirmed." in confirmed["summary"] and "Reason: The gap holds on a re-run." in confirmed["summary"]
    assert confirmed["link"].endswith(f"/models/acme/flagged/?submission={flagged['acme'].pk}#flags")
    assert "score_mismatch" in confirmed["categories"] and "critical" in confirmed["categories"]
    assert "State: under review." in entries[2]["summary"]
    assert root.find(f"{ATOM}author/{ATOM}name").text == "Verity"


def test_the_feed_carries_no_evidence_notes_or_internal_paths(flagged):
    text = Client().get("/feeds/flags.atom").content.decode()
    assert PRIVATE_ITEM not in text and "secret set" not in text  # evidence never goes in
    assert NOTE not in text and "banned" not in text  # maintainers' notes never go in
    assert "/var/lib/verity" not in text and "[path]" in text  # public text is scrubbed
    triage_service.do_reply(flagged["confirmed"], flagged["maintainer"], "Could you share your harness?")
    assert "share your harness" not in Client().get("/feeds/flags.atom").content.decode()


def test_the_model_feed_has_only_that_models_flags(flagged):
    root = atom_of(Client().get("/models/acme/flagged/flags.atom"))
    assert {e["title"].split(":")[0] for e in entries_of(root)} == {"acme/flagged"}
    assert root.findtext(f"{ATOM}title") == "Verity: flags on acme/flagged"
    site_root = atom_of(Client().get("/feeds/flags.atom"))
    assert root.findtext(f"{ATOM}id") != site_root.findtext(f"{ATOM}id")
    # Entry ids are the same in both feeds and from one request to the next (permanent ids).
    model_ids = {e["id"] for e in entries_of(root)}
    assert model_ids <= {e["id"] for e in entries_of(site_root)}
    assert model_ids == {e["id"] for e in entries_of(atom_of(Client().get("/models/acme/flagged/flags.atom")))}


def test_an_unknown_model_or_malformed_repo_has_no_feed(flagged):
    assert Client().get("/models/nobody/nothing/flags.atom").status_code == 404
    assert Client().get("/models/acme/..%2F..%2Fetc/flags.atom").status_code == 404


def test_a_model_without_flags_has_a_valid_empty_feed():
    publish("acme/clean", {"gsm8k": (7, 10)})
    root = atom_of(Client().get("/models/acme/clean/flags.atom"))
    assert root.findall(f"{ATOM}entry") == []


def test_what_the_model_page_hides_stays_out_of_the_feed(flagged):
    """A dismissed info-level flag is hidden on the page: its raised entry goes too. A dismissed
    warning stays public, with its reason. A withdrawn submission's flags are not announced."""
    acme, maintainer = flagged["acme"], flagged["maintainer"]
    info = do_raise_flag(acme, None, make_flag("untrained_tokens", "info", "3 untrained tokens", {}, benchmark=""))
    warning = do_raise_flag(acme, None, make_flag("lora_merge", "warning", "looks like a LoRA merge", {}, benchmark=""))
    triage_service.do_dismiss(info, maintainer, "Harmless padding tokens.")
    triage_service.do_dismiss(warning, maintainer, "The authors documented the merge.")
    withdrawn = ModelSubmission.objects.create(repo_id="acme/flagged", status=ModelSubmission.Status.REJECTED,
                                               rejection_reason="withdrawn by the author")
    do_raise_flag(withdrawn, None, make_flag("weights_changed", "critical", "weights moved", {"current_sha": "b" * 40}))
    text = Client().get("/models/acme/flagged/flags.atom").content.decode()
    assert "untrained tokens" not in text.lower() and "Harmless padding" not in text
    assert "Lora Merge flag dismissed" in text and "The authors documented the merge." in text
    assert "weights moved" not in text
    atom_of(Client().get("/models/acme/flagged/flags.atom"))


@pytest.mark.parametrize("status, severity", list(itertools.product(Flag.Status.values, Flag.Severity.values)))
def test_the_feed_hides_exactly_the_flags_the_model_page_hides(status, severity):
    """The feed's query filter and the page's rule (triage.public_flag) agree on every state."""
    submission = ModelSubmission.objects.create(repo_id="acme/rule", status=ModelSubmission.Status.FLAGGED)
    flag = Flag.objects.create(submission=submission, kind="contamination", severity=severity, summary="s",
                               status=status, decision_reason="why")
    FlagEvent.objects.create(flag=flag, action=FlagEvent.Action.RAISED, to_status="open")
    in_feed = public_flag_events("acme/rule").exists()
    assert in_feed == (triage_service.public_flag(flag) is not None)


def test_the_feed_is_bounded_and_newest_first(flagged, django_assert_max_num_queries):
    submission = flagged["other"]
    for n in range(FEED_LENGTH + 5):
        do_raise_flag(submission, None, make_flag("contamination", "warning", f"overlap {n}", {}, benchmark=f"b{n}"))
    with django_assert_max_num_queries(3):
        root = atom_of(Client().get("/feeds/flags.atom"))
    titles = [e["title"] for e in entries_of(root)]
    assert len(titles) == FEED_LENGTH and f"on b{FEED_LENGTH + 4})" in titles[0]


def test_the_model_page_links_its_feed():
    publish("acme/clean", {"gsm8k": (7, 10)})
    html = Client().get("/models/acme/clean/").content.decode()
    assert '<link rel="alternate" type="application/atom+xml"' in html
    assert 'href="/models/acme/clean/flags.atom"' in html and 'id="model-feed-link"' in html
    assert 'href="/feeds/flags.atom"' in html  # the site-wide feed, from every page's head
