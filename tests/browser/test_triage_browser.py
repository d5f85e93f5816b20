"""A maintainer works a flag from the queue to dismissal in a real browser (Debian chromium,
headless, through Playwright) against pytest-django's live server; the author's reply, posted
from the author's own browser session, shows on the flag page."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from leaderboard.models import Flag, FlagEvent
from leaderboard.services import triage as svc
from tests.leaderboard.test_triage_fixtures import make_flag, make_result, make_run, make_submission, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STEP_TIMEOUT_MS = 15_000


def _session_cookie(user, live_server_url: str) -> dict:
    client = Client()
    client.force_login(user)
    return {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "url": live_server_url}


def test_maintainer_dismisses_a_flag_from_the_queue_and_sees_the_author_reply(live_server, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls below are plain
    # synchronous test code, not async views.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    svc.ensure_maintainers_group()
    maintainer = make_user("mara", maintainer=True)
    author = make_user("alice")
    submission = make_submission("alice-lab/math-7b", author)
    run = make_run(submission)
    make_result(run, "gsm8k", correct=80, n=200, setup={"shots": 8}, claimed=70.0, verdict="inconsistent", z=6.1)
    flag = make_flag(submission, run=run)
    make_flag(submission, kind=Flag.Kind.UNTRAINED_TOKENS, severity=Flag.Severity.INFO, benchmark="",
              summary="2 added tokens untrained")

    ARTIFACTS.mkdir(exist_ok=True)
    reply_text = "Our card states 5-shot; the 8-shot setup in the claim was a typo."
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # The author answers the flag from their own session.
            author_context = browser.new_context()
            author_context.add_cookies([_session_cookie(author, live_server.url)])
            author_page = author_context.new_page()
            author_page.set_default_timeout(STEP_TIMEOUT_MS)
            author_page.goto(f"{live_server.url}/flags/{flag.pk}/reply")
            expect(author_page.locator("body")).to_contain_text("under review")
            author_page.fill("#reply-message", reply_text)
            author_page.click("#reply-submit")
            expect(author_page.locator("#thread")).to_contain_text(reply_text)

            # The maintainer: queue (critical first) -> flag page -> take -> dismiss with a reason.
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            context.add_cookies([_session_cookie(maintainer, live_server.url)])
            page = context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(f"{live_server.url}/triage/")
            first_row = page.locator("#queue tbody tr").first
            expect(first_row).to_have_attribute("data-flag-id", str(flag.pk))
            expect(page.locator("#kind-counts")).to_contain_text("score_mismatch: 1")
            page.screenshot(path=str(ARTIFACTS / "triage_queue.png"), full_page=True)
            first_row.locator("a").first.click()
            page.wait_for_url(f"**/triage/flags/{flag.pk}/")
            expect(page.locator("#comparison")).to_contain_text("40.0 [33.5, 46.9]")
            expect(page.locator("#thread")).to_contain_text(reply_text)
            page.click("#take")
            expect(page.locator("#flag-assignee")).to_have_text("mara")
            # The browser refuses an empty dismissal (required field) before the server would.
            page.click("#dismiss")
            expect(page.locator("#flag-status")).to_have_text("open")
            page.fill("#dismiss-reason", "The claim's setup was mis-recorded; see the author's reply.")
            page.click("#dismiss")
            expect(page.locator("#flag-status")).to_have_text("dismissed")
            expect(page.locator("#thread")).to_contain_text(reply_text)
            expect(page.locator("#thread")).to_contain_text("open → dismissed")
            page.screenshot(path=str(ARTIFACTS / "triage_flag_dismissed.png"), full_page=True)

            # Back in the queue, the dismissed flag is gone from the open list.
            page.goto(f"{live_server.url}/triage/")
            expect(page.locator(f'#queue tr[data-flag-id="{flag.pk}"]')).to_have_count(0)
        finally:
            browser.close()

    flag.refresh_from_db()
    assert flag.status == Flag.Status.DISMISSED and "mis-recorded" in flag.decision_reason
    trail = list(FlagEvent.objects.filter(flag=flag).order_by("at", "id").values_list("action", "from_status", "to_status"))
    assert trail == [("raised", "", "open"), ("reply", "open", "open"), ("assigned", "open", "open"),
                     ("dismissed", "open", "dismissed")]
    shown = svc.public_flag(flag)
    assert shown is not None and shown.label == "dismissed" and "mis-recorded" in shown.reason
    assert (ARTIFACTS / "triage_flag_dismissed.png").stat().st_size > 10_000
