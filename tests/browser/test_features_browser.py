"""Compare, badges and re-scoring in a real browser (Debian chromium, headless, Playwright)
against pytest-django's live server: the compare page shows the paired difference of two models,
the badge SVG renders with its text and links to the model page when embedded, and re-scoring
after a deliberate extractor version change shows its log with the flipped items on the page."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command

from leaderboard.services.leaderboard import do_refresh_leaderboard_entry
from tests.browser.site_data import publish
from tests.fixtures_rescoring import LenientGSM8K
from tests.leaderboard.test_compare import A_ITEMS, B_ITEMS, samples
from tests.leaderboard.test_rescore import DATASETS, published, raise_as_the_pipeline_does
from verification.benchmarks import registry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STEP_TIMEOUT_MS = 15_000


@pytest.fixture
def page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls in these tests are
    # plain synchronous test code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    cache.clear()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def test_compare_two_models_shows_the_paired_difference(page, live_server):
    from playwright.sync_api import expect

    publish("acme/alpha", {"gsm8k": (30, 40)}, samples={"gsm8k": samples(A_ITEMS)})
    publish("acme/beta", {"gsm8k": (20, 40)}, samples={"gsm8k": samples(B_ITEMS)})
    page.goto(f"{live_server.url}/compare/?models=acme/alpha,acme/beta")
    row = page.locator('#compare-table tr[data-benchmark="gsm8k"]')
    expect(row.locator(".paired-diff")).to_contain_text("+25.0 [")
    expect(row).to_contain_text("12 items only A right, 2 only B right")
    expect(row).to_contain_text("McNemar exact p =")
    page.screenshot(path=str(ARTIFACTS / "features-compare-1280x800.png"), full_page=True)
    # A malformed request gets the clear error page, not a crash.
    response = page.goto(f"{live_server.url}/compare/?models=acme/alpha")
    assert response.status == 400
    expect(page.locator("#request-errors")).to_contain_text("Compare 2 to 4 models")


def test_badge_renders_and_links_to_the_model_page(page, live_server, settings):
    from playwright.sync_api import expect

    settings.SITE_URL = live_server.url
    publish("acme/badged", {"gsm8k": (8, 10), "mmlu": (6, 10)})
    badge_url = f"{live_server.url}/badge/acme/badged.svg"
    response = page.goto(badge_url)
    assert response.status == 200 and response.headers["content-type"].startswith("image/svg+xml")
    texts = page.locator("text").all_text_contents()
    assert "Verity" in texts and any(text.startswith("verified · ") for text in texts)
    shot = page.locator("svg").screenshot(path=str(ARTIFACTS / "features-badge.png"))
    assert len(shot) > 500
    # The model page shows the badge image (it loads) and the Markdown snippet.
    page.goto(f"{live_server.url}/models/acme/badged/")
    page.locator("#badge-snippet summary").click()
    expect(page.locator("#badge-markdown")).to_have_value(
        f"[![Verity]({badge_url})]({live_server.url}/models/acme/badged/)")
    assert page.locator("#badge-preview").evaluate("img => img.complete && img.naturalWidth > 0")
    # Embedded as <object>, the SVG's own link takes the reader to the model page.
    page.set_content(f'<object id="b" data="{badge_url}" type="image/svg+xml" width="300" height="20"></object>')
    page.wait_for_function("document.getElementById('b').contentDocument?.querySelector('a') != null")
    box = page.locator("#b").bounding_box()
    with page.expect_navigation():
        page.mouse.click(box["x"] + 20, box["y"] + 10)
    assert page.url == f"{live_server.url}/models/acme/badged/"


@pytest.fixture
def lenient_gsm8k(settings):
    settings.DATASETS_DIR = DATASETS
    original = registry.get("gsm8k")
    registry.register(LenientGSM8K(), replace=True)
    yield
    registry.register(original, replace=True)


def test_rescoring_after_an_extractor_change_shows_the_log(page, live_server, lenient_gsm8k):
    from playwright.sync_api import expect

    submission, old = published("acme/rescored", 62.0, "inconsistent")
    raise_as_the_pipeline_does(submission, old)
    do_refresh_leaderboard_entry(submission)
    page.goto(f"{live_server.url}/models/acme/rescored/")
    expect(page.locator("#rescoring-log")).to_have_count(0)
    call_command("rescore", "--benchmark", "gsm8k", stdout=io.StringIO())
    cache.clear()
    page.goto(f"{live_server.url}/models/acme/rescored/")
    log = page.locator("#rescoring-log")
    expect(log).to_contain_text("v1 → v2-lenient")
    expect(log.locator(".rescore-became-correct").first).to_have_text("15")
    expect(log.locator(".rescore-became-wrong").first).to_have_text("0")
    expect(log).to_contain_text("inconsistent → consistent")
    expect(log).to_contain_text("score_mismatch resolved")
    # The summary shows the current result; the run record keeps the old one, marked, under it.
    expect(page.locator('#results-table tr[data-benchmark="gsm8k"]')).to_have_count(1)
    expect(page.locator('#results-table tr[data-benchmark="gsm8k"]')).to_contain_text("re-scored v1 → v2-lenient")
    expect(page.locator('#measurements-table tr.superseded[data-superseded="gsm8k"]')).to_contain_text(
        "v1, superseded by rescoring v2-lenient")
    page.screenshot(path=str(ARTIFACTS / "features-rescoring-1280x800.png"), full_page=True)
    page.goto(f"{live_server.url}/")
    expect(page.locator("body")).to_contain_text("62.5")
