"""The board's average: only over the full standard set (settings.LEADERBOARD_BENCHMARKS), each
from a valid result. A model missing any standard benchmark, or whose result for one is invalid
(harness errors above MAX_ERROR_RATE), is partial: ranked in a group of its own below the complete
models, never among them, on the page, the API, the CSV and whatever the sort. Invalid results
never count in an average or a score column. Real PostgreSQL, rows built through the real service."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.conf import settings
from django.core.cache import cache

from leaderboard import plots, selectors
from leaderboard.models import BenchmarkResult, LeaderboardEntry, ModelSubmission
from leaderboard.services.leaderboard import do_refresh_leaderboard_entry, entry_values
from tests.browser.site_data import entry, measure, publish
from verification.vocabulary import MAX_ERROR_RATE

pytestmark = pytest.mark.django_db

N_ITEMS = 200  # per result: 1% of it is 2 errored items, so the limit can be approached from both sides


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def standard() -> tuple[str, ...]:
    return tuple(settings.LEADERBOARD_BENCHMARKS)


def scores_at(percent: float, leave_out: str | None = None) -> dict[str, tuple[int, int]]:
    """Every standard benchmark measured at `percent` (one left out if asked)."""
    return {slug: (round(percent * N_ITEMS / 100), N_ITEMS) for slug in standard() if slug != leave_out}


def set_errors(submission: ModelSubmission, benchmark: str, n_errors: int, verdict: str | None = None) -> None:
    """What the runner stores for a benchmark whose harness failed on `n_errors` items, then the
    leaderboard service the pipeline calls on publishing."""
    results = BenchmarkResult.objects.filter(run__submission=submission, benchmark=benchmark)
    results.update(n_errors=n_errors, **({"verdict": verdict} if verdict else {}))
    do_refresh_leaderboard_entry(submission)


def page_rows(html: str) -> list[tuple[str, bool, str]]:
    """(repo, complete, rank cell text) per row of the board's HTML."""
    rows = re.findall(r'data-repo="([^"]+)" data-complete="(true|false)">\s*<td class="rank">(.*?)</td>', html, re.S)
    return [(repo, complete == "true", re.sub(r"<[^>]+>", "", rank).strip()) for repo, complete, rank in rows]


def api_rows(body: dict) -> list[tuple[str, bool, str]]:
    return [(r["repo_id"], r["complete"], str(r["rank"]) if r["complete"] else f"P{r['rank']}") for r in body["results"]]


@pytest.fixture
def mixed_board():
    """A complete model at 50, another at 40, and a partial one (6 of 7) at 90: higher, but it
    lacks one standard benchmark."""
    publish("acme/complete-50", scores_at(50))
    publish("acme/complete-40", scores_at(40))
    publish("acme/partial-90", scores_at(90, leave_out=standard()[-1]))


def test_standard_set_is_the_seven_benchmarks():
    assert len(standard()) == 7  # the tests below are about "6 of 7"


def test_partial_model_with_higher_average_is_never_ranked_among_complete_ones(client, mixed_board):
    partial = entry("acme/partial-90")
    assert partial.complete is False and partial.average == pytest.approx(90.0)
    assert entry("acme/complete-50").complete is True and entry("acme/complete-40").complete is True
    html = client.get("/").content.decode()
    assert page_rows(html) == [("acme/complete-50", True, "1"), ("acme/complete-40", True, "2"),
                               ("acme/partial-90", False, "P1")]
    assert "partial: 6 of 7" in html and 'id="group-partial"' in html
    body = client.get("/api/leaderboard").json()
    assert api_rows(body) == page_rows(html)
    partial_row = body["results"][2]
    assert partial_row["n_benchmarks"] == 6 and partial_row["average"] == pytest.approx(90.0)
    assert body["results"][0]["n_benchmarks"] == 7


@pytest.mark.parametrize("sort", ["-average", "average", "-gsm8k", "gsm8k", "repo_id", "-repo_id", "delta"])
def test_no_sort_mixes_partial_models_into_the_complete_ranking(client, mixed_board, sort):
    html = client.get(f"/?sort={sort}").content.decode()
    groups = [complete for _, complete, _ in page_rows(html)]
    assert groups == [True, True, False]
    assert api_rows(client.get(f"/api/leaderboard?sort={sort}").json()) == page_rows(html)


def test_csv_export_lists_complete_then_partial_with_their_coverage(client, mixed_board):
    rows = list(csv.DictReader(io.StringIO(client.get("/api/leaderboard.csv").content.decode())))
    assert [(r["repo_id"], r["complete"], r["rank"], r["n_benchmarks"]) for r in rows] == [
        ("acme/complete-50", "yes", "1", "7"), ("acme/complete-40", "yes", "2", "7"),
        ("acme/partial-90", "no", "1", "6")]


def test_pages_straddling_the_two_groups_keep_them_apart_and_agree_with_the_api(client, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    for i, percent in enumerate((30, 20, 10)):
        publish(f"acme/complete-{i}", scores_at(percent))
    for i, percent in enumerate((95, 85)):
        publish(f"acme/partial-{i}", scores_at(percent, leave_out=standard()[i]))
    pages = [page_rows(client.get(f"/?page={n}").content.decode()) for n in (1, 2, 3)]
    assert pages == [
        [("acme/complete-0", True, "1"), ("acme/complete-1", True, "2")],
        [("acme/complete-2", True, "3"), ("acme/partial-0", False, "P1")],
        [("acme/partial-1", False, "P2")],
    ]
    for n, expected in enumerate(pages, start=1):
        body = client.get(f"/api/leaderboard?page={n}").json()
        assert body["count"] == 5 and api_rows(body) == expected
    assert client.get("/?page=4").status_code == 404


def test_invalid_result_never_counts_in_the_average_or_a_score_column(client):
    submission = publish("acme/flaky", {**scores_at(50), "gsm8k": (N_ITEMS, N_ITEMS)})
    over = int(MAX_ERROR_RATE * N_ITEMS) + 1  # just above the limit
    set_errors(submission, "gsm8k", over)
    row = entry("acme/flaky")
    assert row.complete is False
    assert row.average == pytest.approx(50.0)  # the invalid 100% is not averaged
    assert "gsm8k" not in row.scores and row.verdicts["gsm8k"] == "invalid"
    html = client.get("/").content.decode()
    assert page_rows(html) == [("acme/flaky", False, "P1")]
    assert 'class="num invalid"' in html and "partial: 6 of 7" in html
    assert "100.0" not in html  # the invalid score is shown as invalid, not as a number
    api = client.get("/api/leaderboard").json()["results"][0]
    assert api["invalid"] == ["gsm8k"] and "gsm8k" not in api["scores"] and api["n_benchmarks"] == 6
    rows = list(csv.DictReader(io.StringIO(client.get("/api/leaderboard.csv").content.decode())))
    assert rows[0]["gsm8k"] == "invalid" and rows[0]["complete"] == "no"


def test_errors_exactly_at_the_limit_still_count():
    """Honest runs with a few harness errors (at most MAX_ERROR_RATE) are measurements."""
    submission = publish("acme/at-limit", scores_at(50))
    set_errors(submission, "mmlu", int(MAX_ERROR_RATE * N_ITEMS))
    row = entry("acme/at-limit")
    assert row.complete is True and "mmlu" in row.scores


def test_a_result_marked_invalid_does_not_count_even_without_errors():
    submission = publish("acme/marked", scores_at(50))
    set_errors(submission, "mmlu", 0, verdict="invalid")
    row = entry("acme/marked")
    assert row.complete is False and "mmlu" not in row.scores


def test_invalid_claimed_result_is_not_drawn_on_the_claims_plot():
    submission = publish("acme/claimed", scores_at(50), claims={"gsm8k": 51.0, "mmlu": 50.0})
    set_errors(submission, "gsm8k", N_ITEMS // 10)
    points = plots.claim_points(selectors.plot_entries())
    assert [(p.model, p.benchmark) for p in points] == [("acme/claimed", "mmlu")]
    assert entry("acme/claimed").max_delta == pytest.approx(0.0)  # only the valid result's gap


def test_complete_model_with_an_invalid_run_becomes_complete_when_remeasured_valid(client):
    publish("acme/rival", scores_at(60))
    submission = publish("acme/remeasured", scores_at(70))
    set_errors(submission, "ifeval", N_ITEMS // 4)
    assert entry("acme/remeasured").complete is False
    assert [(r, c) for r, c, _ in page_rows(client.get("/").content.decode())] == [
        ("acme/rival", True), ("acme/remeasured", False)]
    measure(submission, scores_at(70))  # a new run, every result valid
    row = entry("acme/remeasured")
    assert row.complete is True and row.average == pytest.approx(70.0) and "ifeval" in row.scores
    cache.clear()  # the board's short render cache (a new run bumps it in a worker's process)
    html = client.get("/").content.decode()
    assert page_rows(html) == [("acme/remeasured", True, "1"), ("acme/rival", True, "2")]
    assert api_rows(client.get("/api/leaderboard").json()) == page_rows(html)


def test_model_with_no_standard_benchmark_is_partial_with_no_average():
    submission = publish("acme/offset", {"gsm_fresh": (100, N_ITEMS)})
    row = LeaderboardEntry.objects.get(submission=submission)
    assert row.complete is False and row.average is None


def test_completeness_follows_the_configured_standard_set(settings):
    settings.LEADERBOARD_BENCHMARKS = ("gsm8k", "mmlu")
    publish("acme/two", {"gsm8k": (100, N_ITEMS), "mmlu": (50, N_ITEMS)})
    assert entry("acme/two").complete is True and entry("acme/two").average == pytest.approx(37.5)


def test_entry_values_counts_only_valid_standard_results():
    results = {slug: BenchmarkResult(benchmark=slug, measured=40.0, n=100, n_errors=0, verdict="unclaimed")
               for slug in standard()}
    results[standard()[0]] = BenchmarkResult(benchmark=standard()[0], measured=99.0, n=100, n_errors=2,
                                             verdict="unclaimed")
    values = entry_values({}, results)
    assert values.complete is False and values.average == pytest.approx(40.0)
    results[standard()[0]].n_errors = 1
    values = entry_values({}, results)
    assert values.complete is True and values.average == pytest.approx((99.0 + 6 * 40.0) / 7)
