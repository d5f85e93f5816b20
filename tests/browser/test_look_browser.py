"""How the site reads, in a real browser (Debian Chromium through Playwright, against pytest-django's
live server): a flagged model's summary (status with its reason, claims table, flags) fits in the
first screen at 1280×800, the detailed sections fold away under anchors, the colours follow the
system's dark mode, keyboard focus is visible, and the main pages are screenshotted at desktop and
phone sizes into test-artifacts/screenshots/.

The rows come from tests/browser/site_data.py (the real models and the real leaderboard service)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import NoReverseMatch, reverse

from leaderboard.models import Flag, ModelSubmission
from tests.browser import site_data as sd
from tests.fixtures_services import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
FLAGGED = "acme-lab/math-7b-boosted"
VERIFIED = "acme-lab/chat-7b-honest"
INCOMPLETE = "acme-lab/tiny-3b-partial"

CONTAMINATION_SECTION = {
    "status": "ok", "flagged": True, "fired": ["completion", "heldout_gap"], "base_compared": False, "limit": 12,
    "seed": 20261121, "summary": "gsm8k: 2 contamination methods agree (completion probe, held-out gap).",
    "methods": {
        "heldout_gap": {"status": "fired", "pairs": [{
            "public": "gsm8k", "heldout": "gsm_fresh", "private": False, "fired": True, "z": 5.2,
            "model": {"public": {"k": 82, "n": 200, "p": 0.41, "pct": 41.0},
                      "heldout": {"k": 24, "n": 200, "p": 0.12, "pct": 12.0}, "gap_pct": 29.0, "se_pct": 4.1},
            "estimate_pct": 29.0, "se_pct": 4.1, "base": None}]},
        "completion": {"status": "fired", "by_benchmark": {"gsm8k": {
            "n": 12, "n_reproduced": 5, "model_rate_pct": 41.7, "base_rate_pct": None, "excess_pct": 41.7,
            "model_only": 5, "base_only": 0, "p_value": 7.5e-08, "fired": True, "reproduced": []}}},
    },
    "thresholds": {"completion": {"rouge_l": 0.75}, "skywork": {"delta1_below": -0.5, "delta2_above": 0.5}},
}


@dataclass
class LookSite:
    flagged: ModelSubmission
    verified: ModelSubmission
    incomplete: ModelSubmission
    score_flag: Flag


def seed_look_site() -> LookSite:
    """A flagged model (two inflated claims, a critical score flag, a contamination warning, an info
    flag), an honest verified one with a claimed base, and one left incomplete by a missing check."""
    user = _user("look-author")
    samples = [{"prompt": f"Question {i}: 2 + {i} = ?", "output": f"The answer is {2 + i}.", "extracted": str(2 + i),
                "gold": str(2 + i), "correct": i % 3 != 0} for i in range(12)]
    base = sd.publish("acme-lab/base-7b", {"gsm8k": (50, 200), "arc_challenge": (70, 200)}, created_offset_s=-30)
    verified = sd.publish(VERIFIED, {"gsm8k": (122, 200), "arc_challenge": (108, 200), "mmlu": (640, 1000)},
                          claims={"gsm8k": 60.0, "arc_challenge": 55.0, "mmlu": 63.5}, user=user, base=base.repo_id,
                          samples={"gsm8k": samples})
    flagged = sd.publish(FLAGGED, {"gsm8k": (82, 200), "arc_challenge": (61, 200), "mmlu": (512, 1000)},
                         claims={"gsm8k": 92.5, "arc_challenge": 58.0, "mmlu": 52.0},
                         verdicts={"gsm8k": "inconsistent", "arc_challenge": "inconsistent"}, user=user,
                         samples={"gsm8k": samples}, status=ModelSubmission.Status.FLAGGED)
    ModelSubmission.objects.filter(pk=flagged.pk).update(report={
        "contamination": CONTAMINATION_SECTION,
        "provenance": {"status": "skipped", "reason": "no claimed base"},
        "endpoint": None, "missing_checks": [],
    })
    flagged.refresh_from_db()
    score_flag = sd.flag(flagged, benchmark="gsm8k")
    sd.flag(flagged, benchmark="arc_challenge", severity="warning")
    sd.flag(flagged, kind=Flag.Kind.CONTAMINATION, severity="warning")
    sd.flag(flagged, kind=Flag.Kind.UNTRAINED_TOKENS, severity="info", benchmark="")
    # an honest model a maintainer cleared: the dismissed warning is shown, decided, and marks nothing
    sd.flag(verified, benchmark="gsm8k", severity="warning", status=Flag.Status.DISMISSED,
            reason="The card's 60.0 is the 5-shot figure; measured 61.0 agrees.")
    incomplete = sd.publish(INCOMPLETE, {"gsm8k": (30, 200)}, claims={"gsm8k": 16.0}, user=user,
                            status=ModelSubmission.Status.INCOMPLETE)
    ModelSubmission.objects.filter(pk=incomplete.pk).update(report={"missing_checks": [
        {"check": "contamination", "status": "error", "reason": "the probe model ran out of memory"}]})
    incomplete.refresh_from_db()
    return LookSite(flagged=flagged, verified=verified, incomplete=incomplete, score_flag=score_flag)


def _user(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username, password="a-Long-pass-9876")


def session_cookie(user, live_server_url: str) -> dict:
    client = Client()
    client.force_login(user)
    return {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "url": live_server_url}


def main_pages(site: LookSite) -> dict[str, str]:
    """The site's main HTML pages ({name: path}); compare only where the site has it."""
    pages = {
        "leaderboard": "/",
        "model-flagged": f"/models/{FLAGGED}/",
        "model-verified": f"/models/{VERIFIED}/",
        "model-incomplete": f"/models/{INCOMPLETE}/",
        "submit": "/submit/",
        "run": f"/submissions/{site.flagged.pk}/",
        "plots": "/plots/",
        "methods": "/methods/",
    }
    try:
        pages["compare"] = reverse("compare") + f"?models={FLAGGED},{VERIFIED}"
    except NoReverseMatch:
        pass
    return pages


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make browser-deps` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls in these tests are
    # plain synchronous test code, not async views.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def look_site(live_server):
    from django.core.cache import cache

    cache.clear()  # the live server runs in this process: no board fragment cached by earlier tests
    site = seed_look_site()
    return site


def signed_in_context(chromium, live_server, user, **options):
    context = chromium.new_context(**options)
    context.add_cookies([session_cookie(user, live_server.url)])
    return context


def test_screenshots_of_the_main_pages(chromium, live_server, look_site):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = main_pages(look_site)
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = signed_in_context(chromium, live_server, look_site.flagged.submitter, viewport=viewport)
        page = context.new_page()
        for name, path in pages.items():
            response = page.goto(live_server.url + path)
            assert response is not None and response.status == 200, (name, response and response.status)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=False)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}-full.png"), full_page=True)
        context.close()
    for name in pages:
        assert (SCREENSHOTS / f"{name}-desktop.png").stat().st_size > 5_000


def inside_viewport(page, selector: str) -> dict:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not rendered"
    viewport = page.viewport_size
    return {"box": box, "inside": box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= viewport["height"]
            and box["x"] + box["width"] <= viewport["width"]}


def test_a_flagged_model_reads_at_a_glance_without_scrolling(chromium, live_server, look_site):
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/models/{FLAGGED}/")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.scrollY") == 0
        for selector in ("#status-summary", "#results-table", "#flags"):
            where = inside_viewport(page, selector)
            assert where["inside"], (selector, where["box"])
        assert page.inner_text("#model-badge").strip().endswith("flagged")
        # the reason counts the flags that mark the model (critical + two warnings), not the info one
        assert "3 flags stand against this revision" in page.inner_text("#status-reason")
        # one line per flag, each with a link to its evidence
        lines = page.locator("#flags li.flag")
        assert lines.count() == 4
        for i in range(4):
            assert lines.nth(i).bounding_box()["height"] < 60, lines.nth(i).inner_text()
            assert lines.nth(i).locator("a.evidence-link").get_attribute("href").startswith("#flag-")
        # every claimed benchmark in the summary table, claimed next to measured, verdict in words
        rows = page.locator("#results-table tbody tr")
        assert sorted(rows.nth(i).get_attribute("data-benchmark") for i in range(rows.count())) == [
            "arc_challenge", "gsm8k", "mmlu"]
        gsm8k = page.locator('#results-table tr[data-benchmark="gsm8k"]').inner_text()
        assert "92.5" in gsm8k and "41.0" in gsm8k and "inconsistent" in gsm8k
    finally:
        context.close()


def test_the_detail_sections_fold_away_and_open_from_their_anchors(chromium, live_server, look_site):
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/models/{FLAGGED}/")
        page.wait_for_load_state("networkidle")
        for section in ("flag-evidence", "safety", "provenance", "contamination", "endpoint", "run", "history-section"):
            assert page.evaluate(f"document.getElementById('{section}').tagName") == "DETAILS", section
            assert page.evaluate(f"document.getElementById('{section}').open") is False, section
        assert page.evaluate("document.getElementById('samples-section').open") is True
        # a flag's evidence link opens the folded evidence and lands on that flag
        flag_id = look_site.score_flag.pk
        page.click(f'#flags li[data-flag="{flag_id}"] a.evidence-link')
        page.wait_for_function("document.getElementById('flag-evidence').open")
        evidence = page.locator(f"#flag-{flag_id}")
        assert evidence.is_visible() and "7.1" in evidence.inner_text()
        page.wait_for_function(f"""() => {{ const box = document.getElementById('flag-{flag_id}').getBoundingClientRect();
            return box.top >= 0 && box.bottom <= window.innerHeight; }}""")  # scrolled to it (smoothly)
        # a link from elsewhere (the triage page links #run-record) opens its section on arrival
        page.goto(f"{live_server.url}/models/{FLAGGED}/?submission={look_site.flagged.pk}#run-record")
        page.wait_for_function("document.getElementById('run').open")
        assert page.locator("#run-record").is_visible()
        # the contamination chart is drawn when its section opens, at the section's width
        page.goto(f"{live_server.url}/models/{FLAGGED}/#contamination")
        page.wait_for_selector("#contamination-heldout-plot .main-svg")
        assert page.locator("#contamination-heldout-plot").bounding_box()["width"] > 600
    finally:
        context.close()


def test_verified_and_incomplete_models_say_why(chromium, live_server, look_site):
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/models/{VERIFIED}/")
        assert page.get_attribute("#status-summary", "data-state") == "verified"
        assert "no warning or critical flag stands" in page.inner_text("#status-reason")
        [cleared] = page.locator("#flags li.flag").all()
        assert "dismissed" in cleared.inner_text() and "flag-decided" in cleared.get_attribute("class")
        page.goto(f"{live_server.url}/models/{INCOMPLETE}/")
        assert page.get_attribute("#status-summary", "data-state") == "incomplete"
        assert "Not verified" in page.inner_text("#status-reason")
        missing = page.inner_text("#status-missing")
        assert "contamination" in missing and "ran out of memory" in missing
        assert inside_viewport(page, "#status-missing")["inside"]
    finally:
        context.close()


def chip_look(page, selector: str) -> dict:
    return page.eval_on_selector(selector, """element => {
        const style = getComputedStyle(element), before = getComputedStyle(element, '::before');
        return {text: element.textContent.trim(), symbol: before.content, background: style.backgroundColor,
                colour: style.color};
    }""")


def test_verdicts_are_told_apart_by_words_and_symbols_not_colour_alone(chromium, live_server, look_site):
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/models/{FLAGGED}/")
        bad = chip_look(page, '#results-table tr[data-benchmark="gsm8k"] span[class^="verdict-"]')
        good = chip_look(page, '#results-table tr[data-benchmark="mmlu"] span[class^="verdict-"]')
        assert bad["text"] == "inconsistent" and good["text"] == "consistent"
        assert "✗" in bad["symbol"] and "✓" in good["symbol"]
        assert bad["background"] != good["background"]
        badge = chip_look(page, "#model-badge")
        assert badge["text"] == "flagged" and "✗" in badge["symbol"]
        severities = [chip_look(page, f"#flags li.flag:nth-child({i}) .chip") for i in range(1, 5)]
        assert [s["text"] for s in severities] == ["critical", "warning", "warning", "info"]
        assert len({s["symbol"] for s in severities}) == 3  # critical, warning and info each have their own
    finally:
        context.close()


def test_keyboard_focus_is_visible_and_skips_to_the_content(chromium, live_server, look_site):
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/models/{FLAGGED}/")
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e);
            const box = e.getBoundingClientRect();
            return {cls: e.className, outline: s.outlineStyle, width: parseFloat(s.outlineWidth), left: box.left}; }""")
        assert focused["cls"] == "skip-link" and focused["left"] >= 0  # shown on focus
        assert focused["outline"] != "none" and focused["width"] >= 2
        page.keyboard.press("Enter")
        page.wait_for_function("document.activeElement && document.activeElement.id === 'main'")
        # onward from the content, every focused control shows a focus ring
        for _ in range(8):
            page.keyboard.press("Tab")
            ring = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
                return [document.activeElement.tagName, s.outlineStyle, parseFloat(s.outlineWidth)]; }""")
            assert ring[1] != "none" and ring[2] >= 2, ring
        # the folded sections open from the keyboard
        page.focus("#provenance > summary")
        page.keyboard.press("Enter")
        assert page.evaluate("document.getElementById('provenance').open") is True
    finally:
        context.close()


def luminance(css_colour: str) -> float:
    channels = [int(float(v)) / 255 for v in css_colour[css_colour.index("(") + 1:css_colour.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_dark_mode_follows_the_system_and_charts_share_the_site_colours(chromium, live_server, look_site):
    looks = {}
    for scheme in ("light", "dark"):
        context = chromium.new_context(viewport=DESKTOP, color_scheme=scheme)
        page = context.new_page()
        page.goto(f"{live_server.url}/models/{FLAGGED}/")
        page.wait_for_selector("#plot-model-ci .main-svg")
        looks[scheme] = page.evaluate("""() => {
            const body = getComputedStyle(document.body), root = getComputedStyle(document.documentElement);
            const traces = document.getElementById('plot-model-ci').data;
            return {background: body.backgroundColor, colour: body.color,
                    claimed: root.getPropertyValue('--claimed').trim(), measured: root.getPropertyValue('--measured').trim(),
                    base: root.getPropertyValue('--base').trim(),
                    plotClaimed: traces.find(t => t.name === 'claimed').marker.color,
                    plotMeasured: traces.find(t => t.name.startsWith('measured')).marker.color,
                    plotBackground: getComputedStyle(document.getElementById('ci-chart')).backgroundColor};
        }""")
        if scheme == "dark":
            page.screenshot(path=str(SCREENSHOTS / "model-flagged-desktop-dark.png"))
        context.close()
    light, dark = looks["light"], looks["dark"]
    assert luminance(light["background"]) > 0.9 and luminance(light["colour"]) < 0.05
    assert luminance(dark["background"]) < 0.05 and luminance(dark["colour"]) > 0.6
    # plotly draws with the stylesheet's light-scheme series colours; the chart keeps its white card
    assert (light["plotClaimed"], light["plotMeasured"]) == (light["claimed"], light["measured"])
    assert luminance(dark["plotBackground"]) > 0.9


def test_favicon_and_sticky_table_headers(chromium, live_server, look_site):
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/")
        href = page.get_attribute('link[rel="icon"]', "href")
        response = page.request.get(live_server.url + href)
        assert response.status == 200 and "svg" in response.headers["content-type"]
        assert response.text().lstrip().startswith("<svg")
        assert page.eval_on_selector("#leaderboard-table thead th", "e => getComputedStyle(e).position") == "sticky"
        page.goto(f"{live_server.url}/models/{FLAGGED}/")
        assert page.eval_on_selector("#results-table thead th", "e => getComputedStyle(e).position") == "sticky"
        # no stylesheet, script or font from another host
        foreign = page.evaluate("""() => performance.getEntriesByType('resource').map(r => r.name)
            .filter(name => !name.startsWith(location.origin))""")
        assert foreign == []
    finally:
        context.close()
