"""The site's methods page renders the one methods document, with each check's measured rates,
and never passes raw HTML through."""

from __future__ import annotations

import pytest

from leaderboard import methods_page

pytestmark = pytest.mark.django_db


def test_the_methods_page_shows_the_rules_and_the_measured_rates(client):
    response = client.get("/methods/")
    assert response.status_code == 200
    html = response.content.decode()
    for heading in ("False-flag rates", "A submission", "Endpoint", "Contamination", "Provenance"):
        assert heading in html, heading
    assert html.count("<table>") >= 4  # the judge's false-flag table and each check's rates
    assert 'id="methods-contents"' in html
    assert html.count("<h1") == 1


def test_every_contents_link_has_its_heading(client):
    html = client.get("/methods/").content.decode()
    _, contents = methods_page.methods_html()
    assert contents
    for anchor, _title in contents:
        assert f'href="#{anchor}"' in html and f'id="{anchor}"' in html


def test_raw_html_in_the_document_is_escaped(tmp_path, monkeypatch, client):
    document = tmp_path / "methods.md"
    document.write_text("# Title\n\n## Rules\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    monkeypatch.setattr(methods_page, "METHODS_DOCUMENT", document)
    methods_page.methods_html.cache_clear()
    try:
        html = client.get("/methods/").content.decode()
    finally:
        methods_page.methods_html.cache_clear()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert "<table>" in html and 'id="rules"' in html
