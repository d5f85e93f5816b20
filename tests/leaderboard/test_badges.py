"""The model-card badge: status and average (partial labelled), escaped text, cache headers,
ETag, link to the model page; unknown models get a 'not found' badge with 404."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.core.cache import cache

from leaderboard import badges
from leaderboard.models import LeaderboardEntry
from tests.browser.site_data import flag, publish

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def texts(svg: str) -> list[str]:
    root = ET.fromstring(svg.encode())
    return [node.text for node in root.iter(f"{SVG}text")]


def link_of(svg: str) -> str:
    root = ET.fromstring(svg.encode())
    return root.find(f"{SVG}a").get("href")


def test_verified_model_badge(client, settings):
    settings.SITE_URL = "https://verity.example"
    publish("acme/good", {"gsm8k": (8, 10), "mmlu": (6, 10)})
    response = client.get("/badge/acme/good.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert response["Cache-Control"] == "public, max-age=300"
    assert response["ETag"].startswith('"') and response["ETag"].endswith('"')
    svg = response.content.decode()
    entry = LeaderboardEntry.objects.get(repo_id="acme/good")
    label = "avg" if entry.complete else "partial avg"
    assert f"verified · {label} {entry.average:.1f}" in texts(svg)
    assert link_of(svg) == "https://verity.example/models/acme/good/"


def test_partial_average_is_labelled(client, settings):
    settings.LEADERBOARD_BENCHMARKS = ("gsm8k", "mmlu", "arc_challenge")
    publish("acme/partial", {"gsm8k": (8, 10)})
    entry = LeaderboardEntry.objects.get(repo_id="acme/partial")
    assert not entry.complete
    assert f"verified · partial avg {entry.average:.1f}" in texts(client.get("/badge/acme/partial.svg").content.decode())


def test_complete_average_is_not_labelled_partial(client, settings):
    settings.LEADERBOARD_BENCHMARKS = ("gsm8k", "mmlu")
    publish("acme/full", {"gsm8k": (8, 10), "mmlu": (6, 10)})
    entry = LeaderboardEntry.objects.get(repo_id="acme/full")
    assert entry.complete
    assert "verified · avg 70.0" in texts(client.get("/badge/acme/full.svg").content.decode())


def test_flagged_and_incomplete_badges(client):
    flag(publish("acme/flagged", {"gsm8k": (8, 10)}, claims={"gsm8k": 99.0}))
    publish("acme/unfinished", {"gsm8k": (8, 10)}, status="incomplete")
    assert texts(client.get("/badge/acme/flagged.svg").content.decode())[-1].startswith("flagged")
    assert texts(client.get("/badge/acme/unfinished.svg").content.decode())[-1].startswith("incomplete")


def test_unknown_model_is_a_not_found_badge(client):
    for path in ("/badge/nobody/nothing.svg", "/badge/bad..id/x.svg", "/badge/a/%3Cscript%3E.svg"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
        svg = response.content.decode()
        assert texts(svg)[-1] == "not found" and "<script" not in svg


def test_etag_answers_not_modified(client):
    publish("acme/cached", {"gsm8k": (8, 10)})
    first = client.get("/badge/acme/cached.svg")
    again = client.get("/badge/acme/cached.svg", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"] and not again.content
    stale = client.get("/badge/acme/cached.svg", HTTP_IF_NONE_MATCH='"something-else"')
    assert stale.status_code == 200


def test_badge_may_be_embedded(client):
    publish("acme/embedded", {"gsm8k": (8, 10)})
    response = client.get("/badge/acme/embedded.svg")
    assert "X-Frame-Options" not in response
    assert "default-src 'none'" in response["Content-Security-Policy"]


def test_text_and_link_are_escaped():
    hostile = badges.Badge("verified", 50.0, True, link='https://x/"><script>alert(1)</script>&')
    svg = badges.render_svg(hostile)
    root = ET.fromstring(svg.encode())  # well-formed XML
    assert root.find(f"{SVG}a").get("href") == 'https://x/"><script>alert(1)</script>&'
    assert "<script>" not in svg
    weird = badges.render_svg(badges.Badge("<b>&</b>"))
    assert "<b>" not in weird and ET.fromstring(weird.encode()) is not None


def test_width_grows_with_the_text():
    short = ET.fromstring(badges.render_svg(badges.Badge("pending")).encode())
    long = ET.fromstring(badges.render_svg(badges.Badge("verified", 63.25, False)).encode())
    assert int(long.get("width")) > int(short.get("width")) > 0


def test_model_page_has_the_markdown_snippet(client, settings):
    settings.SITE_URL = "https://verity.example"
    publish("acme/snippet", {"gsm8k": (8, 10)})
    html = client.get("/models/acme/snippet/").content.decode()
    assert ("[![Verity](https://verity.example/badge/acme/snippet.svg)]"
            "(https://verity.example/models/acme/snippet/)") in html
