"""The public pages: leaderboard (ranking, filters, sort, pagination, bounded queries), model page,
sample explorer, run status, plots, author-only actions, CSRF, static assets."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.test import Client

from leaderboard.models import EvaluationRun, Flag, LeaderboardEntry, ModelSubmission
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry
from tests.browser.site_data import entry, flag, publish

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests that create users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


@pytest.fixture
def author(django_user_model):
    return django_user_model.objects.create_user("author", password="pw-Author-123")


@pytest.fixture
def board(author):
    """Three published models: a strong flagged one, a middling verified one, a weak verified one."""
    strong = publish("acme/strong-7b", {"gsm8k": (9, 10), "mmlu": (8, 10)}, claims={"gsm8k": 99.0},
                     verdicts={"gsm8k": "inconsistent"}, user=author, base="meta-llama/Llama-3.1-8B",
                     intake={"parameters": 7_000_000_000, "license": "llama3.1"})
    flag(strong)
    publish("acme/middle", {"gsm8k": (6, 10), "mmlu": (5, 10)}, claims={"gsm8k": 62.0},
            base="mistralai/Mistral-7B-v0.1", intake={"parameters": 500_000_000, "license": "apache-2.0"})
    publish("other/weak", {"gsm8k": (1, 10), "mmlu": (9, 10)}, base="mistralai/Mistral-7B-v0.1",
            intake={"parameters": 500_000_000, "license": "mit"})
    return strong


def repos_in(html: str) -> list[str]:
    return re.findall(r'data-repo="([^"]+)"', html)


def test_leaderboard_ranks_by_measured_average_with_badges_and_delta(client, board):
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert repos_in(html) == ["acme/strong-7b", "acme/middle", "other/weak"]
    strong = entry("acme/strong-7b")
    assert strong.average == pytest.approx(85.0) and strong.badge == "flagged"
    assert strong.max_delta == pytest.approx(9.0)  # claimed 99 − measured 90
    assert entry("acme/middle").badge == "verified"
    assert 'badge-flagged">flagged' in html and "+9.0" in html


def test_leaderboard_filters_search_and_sort(client, board):
    assert repos_in(client.get("/?hide_flagged=on").content.decode()) == ["acme/middle", "other/weak"]
    assert repos_in(client.get("/?size=3-9B").content.decode()) == ["acme/strong-7b"]
    assert repos_in(client.get("/?family=mistral").content.decode()) == ["acme/middle", "other/weak"]
    assert repos_in(client.get("/?license=mit").content.decode()) == ["other/weak"]
    assert repos_in(client.get("/?q=acme").content.decode()) == ["acme/strong-7b", "acme/middle"]
    assert repos_in(client.get("/?sort=-mmlu").content.decode()) == ["other/weak", "acme/strong-7b", "acme/middle"]
    assert repos_in(client.get("/?sort=gsm8k").content.decode()) == ["other/weak", "acme/middle", "acme/strong-7b"]
    assert repos_in(client.get("/?sort=repo_id").content.decode())[0] == "acme/middle"


def test_leaderboard_htmx_request_gets_only_the_table(client, board):
    response = client.get("/?q=weak", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html and repos_in(html) == ["other/weak"]


@pytest.mark.parametrize(
    "query, message",
    [
        ("sort=nonsense", "unknown sort column"),
        ("page=zero", "Enter a whole number"),
        ("page=0", "greater than or equal to 1"),
        ("size=huge", "Select a valid choice"),
        ("q=" + "x" * 101, "at most 100 characters"),
    ],
)
def test_leaderboard_rejects_bad_parameters_with_a_message(client, board, query, message):
    response = client.get(f"/?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_leaderboard_page_past_the_end_is_404(client, board):
    assert client.get("/?page=9").status_code == 404


def test_leaderboard_paginates_with_bounded_queries(client, django_assert_max_num_queries):
    for i in range(60):
        publish(f"bulk/model-{i:02d}", {"gsm8k": (i % 11, 10)})
    with django_assert_max_num_queries(4):  # filter choices (2, cached after) + count + page
        first = client.get("/")
    assert len(repos_in(first.content.decode())) == 50
    with django_assert_max_num_queries(2):
        second = client.get("/?page=2")
    assert len(repos_in(second.content.decode())) == 10
    assert "page 2 of 2 (60 models)" in second.content.decode()


def test_one_row_per_repository_latest_revision_wins(client):
    publish("acme/revised", {"gsm8k": (3, 10)})
    newer = publish("acme/revised", {"gsm8k": (7, 10)}, created_offset_s=60)
    rows = LeaderboardEntry.objects.filter(repo_id="acme/revised")
    assert [r.submission_id for r in rows] == [newer.pk]
    assert rows[0].average == pytest.approx(70.0)


def test_badge_follows_flag_decisions(board):
    # As the pipeline publishes: a report whose every check ran (a flagged submission with no
    # report ran no check, and is incomplete once its flags are decided).
    ModelSubmission.objects.filter(pk=board.pk).update(report={"run": {"checks": []}})
    open_flag = Flag.objects.get(submission=board)
    open_flag.status = Flag.Status.DISMISSED
    open_flag.decision_reason = "harness difference, re-run under the claimed setup agrees"
    open_flag.save()
    do_refresh_leaderboard_entry(board)
    assert entry("acme/strong-7b").badge == "verified"
    open_flag.status = Flag.Status.CONFIRMED
    open_flag.save()
    do_refresh_leaderboard_entry(board)
    assert entry("acme/strong-7b").badge == "flagged"


def test_info_flag_never_marks_a_model(board):
    middle = ModelSubmission.objects.get(repo_id="acme/middle")
    flag(middle, kind=Flag.Kind.LORA_MERGE, severity="info")
    assert entry("acme/middle").badge == "verified"


def test_model_page_shows_claims_measurements_flags_and_reproduce_command(client, board, author,
                                                                          django_assert_max_num_queries):
    # failed checks: the report sections' own templates and the fallback both show the error
    board.report = {name: {"status": "error", "error": f"boom-{name}"} for name in ("provenance", "contamination",
                                                                                   "endpoint")}
    board.save()
    with django_assert_max_num_queries(14):
        response = client.get("/models/acme/strong-7b/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-benchmark="gsm8k"' in html and "inconsistent" in html
    assert "99.0" in html and "90.0" in html  # claimed and measured
    assert 'id="plot-model-ci"' in html  # the plotly CI chart
    assert "under review" in html  # open flag's public state
    for name in ("provenance", "contamination", "endpoint"):  # each section: its own template, else the fallback
        try:
            expected = render_to_string(f"includes/{name}.html", {"section": board.report[name]}).strip()
        except TemplateDoesNotExist:
            expected = f"boom-{name}"
        assert expected in html
    assert "python manage.py verify acme/strong-7b --revision" in html
    assert "flag-reply" not in html  # anonymous: no reply box
    client.force_login(author)
    assert "flag-reply" in client.get("/models/acme/strong-7b/").content.decode()


def test_model_page_query_count_does_not_grow_with_flags_and_results(client, board, django_assert_max_num_queries):
    for i in range(15):
        flag(board, benchmark=f"mmlu", severity="warning")
    with django_assert_max_num_queries(14):
        assert client.get("/models/acme/strong-7b/").status_code == 200


def test_model_page_unknown_model_is_404(client, board):
    assert client.get("/models/nobody/nothing/").status_code == 404
    assert client.get("/models/acme/strong-7b/?submission=abc").status_code == 404


def _sample(correct: bool, error: str | None = None) -> dict:
    return {"prompt": "Q?", "output": "A: 4", "extracted": "4", "gold": "4" if correct else "5",
            "correct": correct, "score": 1.0 if correct else 0.0, "error": error}


def test_sample_explorer_filters_and_paginates_public_items(client):
    rows = [_sample(True)] * 15 + [_sample(False)] * 10 + [_sample(False, "timeout")] * 3
    sub = publish("acme/samples", {"gsm8k": (15, 28)}, samples={"gsm8k": rows})
    base = f"/models/acme/samples/samples?submission={sub.pk}&benchmark=gsm8k"
    first = client.get(base).content.decode()
    assert first.count('class="sample-row"') == 20 and "page 1 of 2 (28 items)" in first
    wrong = client.get(base + "&show=wrong").content.decode()
    assert "(13 items)" in wrong and "correct</td>" not in wrong
    errored = client.get(base + "&show=errored").content.decode()
    assert "(3 items)" in errored and "error: timeout" in errored
    assert client.get(base + "&show=everything").status_code == 400
    assert client.get(base + "&page=5").status_code == 404


def test_private_benchmark_shows_aggregates_never_items(client):
    sub = publish("acme/private", {"gsm_private": (4, 10), "gsm8k": (5, 10)}, private=("gsm_private",))
    response = client.get(f"/models/acme/private/samples?submission={sub.pk}&benchmark=gsm_private")
    assert response.status_code == 403
    assert "private benchmark" in response.content.decode()
    page = client.get("/models/acme/private/").content.decode()
    assert "gsm_private" in page and '<option value="gsm_private">' not in page


def test_status_page_progress_and_partial_stops_polling_when_done(client, author):
    sub = ModelSubmission.objects.create(repo_id="acme/running", submitter=author, status="running")
    run = EvaluationRun.objects.create(
        submission=sub, model_repo=sub.repo_id, status="running", progress_done=3, progress_total=10,
        current_benchmark="gsm8k", current_step="scoring gsm8k", benchmarks=[{"slug": "gsm8k", "limit": 10}],
        log=[{"at": "t0", "step": "intake ok"}],
    )
    html = client.get(f"/submissions/{sub.pk}/").content.decode()
    assert "3/10" in html and "scoring gsm8k" in html and 'hx-trigger="every 1s"' in html
    run.status, run.progress_done = "done", 10
    run.save()
    sub.status = "verified"
    sub.save()
    partial = client.get(f"/submissions/{sub.pk}/progress").content.decode()
    assert "10/10" in partial and "every 1s" not in partial and 'id="run-finished"' in partial


def test_author_cannot_withdraw_anothers_submission(client, author, django_user_model):
    sub = ModelSubmission.objects.create(repo_id="acme/pending", submitter=author, status="queued")
    intruder = django_user_model.objects.create_user("intruder", password="pw-Intruder-123")
    client.force_login(intruder)
    response = client.post(f"/submissions/{sub.pk}/withdraw")
    assert response.status_code == 403 and "Only the author" in response.content.decode()
    sub.refresh_from_db()
    assert sub.status == "queued"
    assert 'id="withdraw"' not in client.get(f"/submissions/{sub.pk}/").content.decode()
    client.force_login(author)
    assert 'id="withdraw"' in client.get(f"/submissions/{sub.pk}/").content.decode()
    assert client.post(f"/submissions/{sub.pk}/withdraw").status_code == 302
    sub.refresh_from_db()
    assert sub.status == "rejected" and sub.rejection_reason == "withdrawn by the author"
    assert 'id="withdraw"' not in client.get(f"/submissions/{sub.pk}/progress").content.decode()
    assert client.post(f"/submissions/{sub.pk}/withdraw").status_code == 409  # no longer pending


def test_csrf_is_enforced_on_posts(author):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(author)
    sub = ModelSubmission.objects.create(repo_id="acme/csrf", submitter=author, status="queued")
    assert csrf_client.post(f"/submissions/{sub.pk}/withdraw").status_code == 403
    assert csrf_client.post("/submit/", {"repo_id": "acme/x"}).status_code == 403
    sub.refresh_from_db()
    assert sub.status == "queued"


def test_plots_page_marks_inconsistent_claims(client, board):
    html = client.get("/plots/").content.decode()
    assert 'id="plot-claimed-vs-measured"' in html
    assert "1 contradicted by the measurement" in html
    # the contradicted claim is drawn in its own trace (red crosses), with its model in the hover text
    marked = re.search(r'"name":"inconsistent \\u002f discrepant".*?\}', html) and re.search(
        r'"text":\["acme\\u002fstrong-7b \\u00b7 gsm8k \\u00b7 inconsistent"\]', html)
    assert marked, "inconsistent claim not marked"


def test_heldout_gap_plot_appears_with_fresh_results(client):
    publish("acme/fresh", {"gsm8k": (9, 10), "gsm_fresh": (4, 10)})
    assert 'id="plot-heldout-gap"' in client.get("/plots/").content.decode()


def test_static_htmx_and_plotly_are_served_locally(client):
    assert finders.find("django_htmx/htmx-2.min.js")
    assert finders.find("plotly/plotly.min.js")
    html = client.get("/").content.decode()
    assert "/static/django_htmx/htmx-2.min.js" in html and "cdn" not in html.lower()


def test_api_tokens_are_shown_once_and_stored_hashed(client, author):
    client.force_login(author)
    html = client.post("/accounts/tokens/", {"name": "ci"}).content.decode()
    key = re.search(r'id="new-token">([^<]+)<', html).group(1)
    token = author.api_tokens.get()
    assert key not in (token.key_hash, token.prefix) and token.prefix == key[:12]
    assert key not in client.get("/accounts/tokens/").content.decode()
    other = get_user_model().objects.create_user("other", password="pw-Other-123")
    client.force_login(other)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke").status_code == 404
    assert author.api_tokens.count() == 1


def test_model_page_draws_the_contamination_heldout_chart(client):
    sub = publish("acme/gap", {"gsm8k": (8, 10)})
    sub.report = {"contamination": {"methods": {"heldout_gap": {"pairs": [
        {"public": "gsm8k", "heldout": "gsm_fresh",
         "model": {"public": {"p": 0.8, "n": 100}, "heldout": {"p": 0.5, "n": 100}}}]}}}}
    sub.save()
    html = client.get("/models/acme/gap/").content.decode()
    assert 'id="heldout-figure"' in html and "Submitted model: held-out" in html


def test_status_and_samples_pages_have_bounded_queries(client, django_assert_max_num_queries):
    rows = [_sample(i % 2 == 0) for i in range(60)]
    sub = publish("acme/bounded", {"gsm8k": (30, 60), "mmlu": (5, 10), "arc_challenge": (3, 10)},
                  samples={"gsm8k": rows})
    for _ in range(5):
        EvaluationRun.objects.create(submission=sub, model_repo=sub.repo_id, status="failed", error="earlier attempt")
    with django_assert_max_num_queries(7):
        assert client.get(f"/submissions/{sub.pk}/").status_code == 200
    with django_assert_max_num_queries(5):
        assert client.get(f"/submissions/{sub.pk}/progress").status_code == 200
    with django_assert_max_num_queries(5):
        assert client.get(f"/models/acme/bounded/samples?submission={sub.pk}&benchmark=gsm8k&page=2").status_code == 200


def test_model_page_shows_the_base_uplift_the_pipeline_compared(client):
    sub = publish("acme/tuned", {"gsm8k": (9, 10)}, base="acme/base")
    sub.report = {"base": {"gsm8k": {"n": 10, "ci_low": 16.8, "ci_high": 68.7, "measured": 40.0}}}
    sub.save()
    html = client.get("/models/acme/tuned/").content.decode()
    row = re.search(r'<tr data-benchmark="gsm8k">.*?</tr>', html, re.S).group(0)
    assert "40.0" in row and "+50.0" in row  # base measured, uplift = 90 − 40
