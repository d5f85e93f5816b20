"""axe-core (the copy bundled by the axe-playwright-python package, injected by the test, never served
by the site) run in Debian Chromium on the site's main pages, in the light and the dark colour
scheme: no serious or critical violation. Pages and rows: tests/browser/test_look_browser.py."""

from __future__ import annotations

import pytest

from tests.browser.test_look_browser import DESKTOP, PHONE, chromium, look_site, main_pages, signed_in_context

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
__all__ = ["chromium", "look_site"]  # fixtures, shared with the look tests

BLOCKING_IMPACTS = {"serious", "critical"}


def blocking_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"resultTypes": ["violations"]})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at " + ", ".join(str(node["target"]) for node in v["nodes"][:5])
        for v in results.response["violations"]
        if v.get("impact") in BLOCKING_IMPACTS
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_main_pages_have_no_serious_accessibility_violation(chromium, live_server, look_site, scheme):
    context = signed_in_context(chromium, live_server, look_site.flagged.submitter, viewport=DESKTOP,
                                color_scheme=scheme)
    page = context.new_page()
    found = {}
    try:
        for name, path in main_pages(look_site).items():
            response = page.goto(live_server.url + path)
            assert response is not None and response.status == 200, name
            page.wait_for_load_state("networkidle")
            if name.startswith("model-"):  # the folded sections are checked too
                page.evaluate("document.querySelectorAll('details').forEach(function (d) { d.open = true; })")
            violations = blocking_violations(page)
            if violations:
                found[name] = violations
    finally:
        context.close()
    assert not found, "\n".join(f"{name}: {v}" for name, vs in found.items() for v in vs)


def test_phone_layout_has_no_serious_accessibility_violation(chromium, live_server, look_site):
    """At phone width the navigation and the tables reflow; the model pages are checked there too."""
    context = signed_in_context(chromium, live_server, look_site.flagged.submitter, viewport=PHONE)
    page = context.new_page()
    found = {}
    try:
        for name in ("leaderboard", "model-flagged"):
            page.goto(live_server.url + main_pages(look_site)[name])
            page.wait_for_load_state("networkidle")
            page.evaluate("document.querySelectorAll('details').forEach(function (d) { d.open = true; })")
            violations = blocking_violations(page)
            if violations:
                found[name] = violations
    finally:
        context.close()
    assert not found, "\n".join(f"{name}: {v}" for name, vs in found.items() for v in vs)


def test_axe_reports_a_planted_violation(chromium, live_server, look_site):
    """The checker is live: an image without alt text and an unlabelled input on a real page are
    reported (a checker that found nothing anywhere would pass every test above)."""
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        page.evaluate("""() => {
            const main = document.querySelector('main');
            const img = document.createElement('img'); img.src = '/static/leaderboard/favicon.svg'; main.appendChild(img);
            const input = document.createElement('input'); input.type = 'text'; main.appendChild(input);
        }""")
        violations = blocking_violations(page)
    finally:
        context.close()
    assert any(v.startswith("image-alt") for v in violations), violations
    assert any(v.startswith("label") for v in violations), violations
