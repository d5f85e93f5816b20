"""Following a model in a real browser (Debian chromium, headless, Playwright) against
pytest-django's live server: the model page announces its Atom feed, the feed it points to is
served as Atom, and a signed-in reader watches the model with the page's button (a real form
POST with its CSRF token) and finds it in their watched list."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.request import urlopen

import pytest
from django.conf import settings
from django.test import Client

from leaderboard.models import ModelSubmission, Watch
from leaderboard.services.flags import do_raise_flag
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry
from tests.browser.site_data import publish
from tests.leaderboard.test_triage_fixtures import make_user
from verification.compare import make_flag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STEP_TIMEOUT_MS = 15_000
ATOM = "{http://www.w3.org/2005/Atom}"


def _session_cookie(user, live_server_url: str) -> dict:
    client = Client()
    client.force_login(user)
    return {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "url": live_server_url}


def test_feed_link_and_watch_toggle(live_server, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    submission = publish("acme/followed", {"gsm8k": (5, 10)}, claims={"gsm8k": 90.0},
                         status=ModelSubmission.Status.FLAGGED)
    do_raise_flag(submission, None, make_flag("score_mismatch", "critical", "claimed 90.0, measured 50.0", {},
                                              benchmark="gsm8k"))
    do_refresh_leaderboard_entry(submission)  # as the pipeline does once it publishes
    reader = make_user("reader")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_cookies([_session_cookie(reader, live_server.url)])
            page = context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(f"{live_server.url}/models/acme/followed/")
            feed_href = page.locator('head link[rel="alternate"][type="application/atom+xml"][title^="Flags on"]')
            assert feed_href.get_attribute("href") == "/models/acme/followed/flags.atom"
            expect(page.locator("#model-feed-link")).to_be_visible()
            with urlopen(f"{live_server.url}{feed_href.get_attribute('href')}", timeout=10) as response:
                assert response.headers["Content-Type"].startswith("application/atom+xml")
                feed = ET.fromstring(response.read())
            assert [e.findtext(f"{ATOM}title") for e in feed.findall(f"{ATOM}entry")] == [
                "acme/followed: Score Mismatch flag raised (critical on gsm8k)"]

            expect(page.locator("#watch-toggle")).to_have_text("Watch this model")
            page.click("#watch-toggle")
            expect(page.locator("#watch-toggle")).to_have_text("Stop watching")
            assert Watch.objects.filter(user=reader, repo_id="acme/followed").exists()
            page.screenshot(path=str(ARTIFACTS / "follow-watching.png"))
            page.goto(f"{live_server.url}/me/watched/")
            expect(page.locator('#watched-table tr[data-repo="acme/followed"]')).to_contain_text("flagged")
            page.click('#watched-table tr[data-repo="acme/followed"] button')
            expect(page.locator("#watch-toggle")).to_have_text("Watch this model")
            assert not Watch.objects.exists()
        finally:
            browser.close()
