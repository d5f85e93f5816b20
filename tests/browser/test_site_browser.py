"""End to end in a real browser: headless Debian Chromium (Playwright) against the live server
(real HTTP), a real Celery worker on the real Redis, and a tiny real model in the HF cache.

A newcomer signs up, commits their owner token to their copy of the tiny model (the proof of
control an author submission needs), submits it with a claim, watches the run's progress reach done
(htmx polling, no reload), finds the model on the leaderboard with a filter, opens its page and
sees the plotly chart render. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from leaderboard.models import LeaderboardEntry, ModelSubmission
from tests.fixtures_services import REPO_ROOT
from tests.workers.pipeline_helpers import variant_repo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
RUN_TIMEOUT_MS = 150_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make browser-deps` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop; Django refuses sync ORM calls in a thread with a
    # running loop unless told this is intended (the test's own ORM reads are plain sync code).
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def worker(tiny_base, start_worker, tmp_path):
    """A real worker, measuring with the transformers backend on a few items, checks off (this
    test is about the site, the checks have their own tests)."""
    return start_worker(
        "default,gpu",
        extra_env={
            "INFERENCE_BACKEND": "transformers",
            "DEFAULT_EVAL_LIMIT": "3",
            "VERITY_CORE_BENCHMARKS": "none",
            "VERITY_CHECKS": "none",
            "MODEL_CACHE_DIR": str(tmp_path / "model-cache"),
            "VERITY_VAR_DIR": str(tmp_path / "var"),
            "HF_HUB_CACHE": os.environ["HF_HUB_CACHE"],
            "HF_HUB_OFFLINE": "1",
        },
    )


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_sign_up_submit_follow_find_and_inspect(page, live_server, worker, tiny_base, hf_cache, tmp_path):
    from django.core.cache import cache

    cache.clear()  # the live server runs in this process: no board fragment cached by earlier tests
    url = live_server.url
    repo_id = "newcomer/tiny-model"
    # sign up
    page.goto(f"{url}/accounts/signup/")
    page.fill("#id_username", "newcomer")
    page.fill("#id_password1", "a-Long-pass-9876")
    page.fill("#id_password2", "a-Long-pass-9876")
    page.click("#signup-submit")
    page.wait_for_url(f"{url}/submit/")
    assert "Log out newcomer" in page.inner_text("header")

    # the newcomer's repo: a copy of the tiny model holding the owner token the site shows them
    page.goto(f"{url}/accounts/owner-token/")
    token = page.inner_text("#owner-token").strip()
    variant_repo(tiny_base.path, tmp_path, hf_cache, repo_id, add={".verity/owner-token": token})
    page.goto(f"{url}/submit/")

    # submit the tiny model with a claim (ARC-Challenge 0-shot: scored by log-likelihood, quick on
    # CPU); a bad score first, fixed after the message
    page.fill("#id_repo_id", repo_id)
    page.fill("[name=score_arc_challenge]", "140")
    page.click("#submit-button")
    assert "outside 0–100" in page.inner_text("#submit-form")
    assert not ModelSubmission.objects.exists()
    page.fill("[name=score_arc_challenge]", "35")
    page.fill("[name=shots_arc_challenge]", "0")
    page.click("#submit-button")
    page.wait_for_url(re.compile(r".*/submissions/\d+/$"))
    status_url = page.url

    # the progress refreshes in place (htmx) until the run is done: no navigation happens (a
    # reload would drop this marker from the window)
    page.evaluate("window.__verityMarker = 1")
    page.wait_for_selector("#run-finished", timeout=RUN_TIMEOUT_MS)
    assert page.url == status_url
    assert page.evaluate("window.__verityMarker") == 1
    # the checks are off in this test, so a clean run ends "incomplete" (verification.report.status_for)
    assert page.inner_text("#submission-status") in ("verified", "flagged", "incomplete")
    assert page.inner_text("#run-status") == "done"
    screenshot(page, "run-status.png")
    assert re.search(r"(\d+)/\1", page.inner_text("#overall-count")), page.inner_text("#overall-count")
    submission = ModelSubmission.objects.get()
    assert submission.submitter.username == "newcomer" and submission.owner_proof["method"] == "repo_token"
    assert LeaderboardEntry.objects.filter(submission=submission).exists()

    # the leaderboard, filtered to its size class and searched by name
    page.goto(f"{url}/")
    page.select_option("#filter-size", "<1B")
    page.wait_for_selector(f'tr.entry[data-repo="{repo_id}"]')
    page.fill("#filter-q", "tiny-model")
    page.click("#filter-apply")
    page.wait_for_function("document.querySelectorAll('tr.entry').length === 1")
    assert "size=%3C1B" in page.url or "size=<1B" in page.url
    screenshot(page, "leaderboard.png")

    # the model page and its plotly chart
    page.click(f'tr.entry[data-repo="{repo_id}"] a.model-link')
    page.wait_for_url(f"{url}/models/{repo_id}/")
    page.wait_for_selector("#plot-model-ci .main-svg", timeout=20_000)  # plotly drew the SVG
    assert page.locator("#results-table tr[data-benchmark=arc_challenge]").count() == 1
    page.wait_for_selector("#samples-table tr.sample-row")  # the per-sample explorer loaded (htmx)
    assert f"python manage.py verify {repo_id}" in page.inner_text("#reproduce")
    screenshot(page, "model-page.png")
    assert (ARTIFACTS / "leaderboard.png").stat().st_size > 10_000
    assert (ARTIFACTS / "model-page.png").stat().st_size > 10_000
