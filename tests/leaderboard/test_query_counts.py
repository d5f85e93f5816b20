"""Bounded queries per page: the leaderboard page, the JSON leaderboard, a model page and its
sample explorer issue a fixed number of queries, whatever the number of models, results, flags,
runs or per-item rows (the load figures in performance/site_load.py rest on this). Each bound is
asserted with the cache empty (the uncached cost) and the database holding more rows than a page
shows, so a query per row would exceed it."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leaderboard import selectors
from tests.browser.site_data import flag, measure, publish

pytestmark = pytest.mark.django_db

N_ITEMS = 40

# Leaderboard: the filter menus (1: both skip scans), the counts (1), a page's rows (1, or 2 for
# the page that straddles the complete and partial groups).
BOARD_PAGE_QUERIES = 4
# JSON leaderboard: the counts and a page's rows (1 or 2).
API_BOARD_QUERIES = 3
# Model page: the submission with its row, the latest run, claims, results, the base's
# measurements, flags, re-scoring log (about 8 today): fixed, not per result, flag, run or item.
# Its History fold (submissions, community verifications, runs) is read when it opens.
MODEL_PAGE_QUERIES = 12
# History fold: the submission shown, the repository's submissions, its runs.
HISTORY_QUERIES = 3
# Sample explorer: the submission, the latest run, the result, a page of items and its count.
SAMPLE_PAGE_QUERIES = 5


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def scores(percent: int, leave_out: str | None = None) -> dict[str, tuple[int, int]]:
    return {slug: (percent * N_ITEMS // 100, N_ITEMS) for slug in settings.LEADERBOARD_BENCHMARKS if slug != leave_out}


@pytest.fixture
def busy_board(monkeypatch):
    """More models than a page (pages of 4): complete and partial ones, flags on some, a second
    run for one, per-item rows for another."""
    monkeypatch.setattr(selectors, "PAGE_SIZE", 4)
    standard = tuple(settings.LEADERBOARD_BENCHMARKS)
    busy = None
    for i in range(7):
        submission = publish(f"acme/complete-{i}", scores(30 + 5 * i), claims={"gsm8k": 90.0},
                             verdicts={"gsm8k": "inconsistent"}, base="meta-llama/Llama-3.1-8B",
                             samples={"gsm8k": [_sample(j % 3 == 0) for j in range(N_ITEMS)]})
        for _ in range(i):
            flag(submission, severity="warning", benchmark=standard[i % len(standard)])
        busy = busy or submission
    for i in range(5):
        publish(f"acme/partial-{i}", scores(60 + 5 * i, leave_out=standard[i]), base="mistralai/Mistral-7B-v0.1")
    measure(busy, scores(35))
    cache.clear()
    return busy


def _sample(correct: bool) -> dict:
    return {"prompt": "Q?", "output": "A: 4", "extracted": "4", "gold": "4" if correct else "5",
            "correct": correct, "score": 1.0 if correct else 0.0, "error": None}


@pytest.mark.parametrize("query", ["", "page=2", "page=3", "sort=-gsm8k&page=2", "sort=delta",
                                   "hide_flagged=on&family=llama", "q=partial&sort=repo_id"])
def test_leaderboard_page_queries_are_bounded(client, busy_board, django_assert_max_num_queries, query):
    with django_assert_max_num_queries(BOARD_PAGE_QUERIES):
        response = client.get(f"/?{query}")
    assert response.status_code == 200 and response.content.count(b'class="entry ') >= 1


def test_leaderboard_page_served_from_cache_needs_no_query_for_the_board(client, busy_board,
                                                                          django_assert_max_num_queries):
    client.get("/?page=2")
    with django_assert_max_num_queries(0):
        assert client.get("/?page=2").status_code == 200


@pytest.mark.parametrize("query", ["", "page=2", "page=3", "sort=-mmlu", "size=<1B&sort=gsm8k"])
def test_api_leaderboard_queries_are_bounded(client, busy_board, django_assert_max_num_queries, query):
    with django_assert_max_num_queries(API_BOARD_QUERIES):
        response = client.get(f"/api/leaderboard?{query}")
    assert response.status_code == 200


def test_model_page_queries_are_bounded_and_do_not_grow_with_flags_runs_or_samples(
        client, busy_board, django_assert_max_num_queries):
    with CaptureQueriesContext(connection) as small:
        assert client.get("/models/acme/complete-1/").status_code == 200
    with django_assert_max_num_queries(MODEL_PAGE_QUERIES):
        response = client.get("/models/acme/complete-0/")  # 2 runs, flags, 40 items per result
    assert response.status_code == 200
    with CaptureQueriesContext(connection) as busy:
        client.get("/models/acme/complete-0/")
    # acme/complete-1: one run, one flag; acme/complete-0: two runs, no flag but more history
    assert len(busy.captured_queries) == len(small.captured_queries)
    with CaptureQueriesContext(connection) as flagged:
        assert client.get("/models/acme/complete-6/").status_code == 200  # six flags
    assert len(flagged.captured_queries) == len(small.captured_queries)
    # the per-item rows are never on the page itself: the explorer loads one page of them
    assert response.content.count(b'class="sample-row"') == 0


def test_history_fold_is_read_when_opened_and_marks_the_submission_shown(client, busy_board,
                                                                        django_assert_max_num_queries):
    page = client.get("/models/acme/complete-0/").content.decode()
    assert 'id="history-body"' in page and 'hx-get="/models/acme/complete-0/history?submission=' in page
    assert 'id="runs"' not in page  # not on the page itself
    with django_assert_max_num_queries(HISTORY_QUERIES):
        fold = client.get("/models/acme/complete-0/history", HTTP_HX_REQUEST="true")
    html = fold.content.decode()
    runs = re.findall(r"<tr><td>(\d+)</td><td>#", html)
    assert fold.status_code == 200 and "<h1>" not in html and "(shown)" in html and len(runs) == 2
    assert 'href="/models/acme/complete-0/?submission=' in html
    standalone = client.get("/models/acme/complete-0/history").content.decode()
    assert "<h1>History of" in standalone and "<html" in standalone
    assert client.get("/models/acme/nothing/history").status_code == 404
    assert client.get("/models/acme/complete-0/history?submission=x1").status_code == 404


@pytest.mark.parametrize("query", ["", "&show=wrong", "&page=2"])
def test_sample_explorer_reads_one_page_of_items(client, busy_board, django_assert_max_num_queries, query):
    submission = publish("acme/samples", {"gsm8k": (N_ITEMS // 2, N_ITEMS)},
                         samples={"gsm8k": [_sample(j % 2 == 0) for j in range(N_ITEMS)]})
    with django_assert_max_num_queries(SAMPLE_PAGE_QUERIES):
        response = client.get(f"/models/acme/samples/samples?submission={submission.pk}&benchmark=gsm8k{query}")
    html = response.content.decode()
    assert response.status_code == 200
    assert 0 < html.count('class="sample-row"') <= selectors.SAMPLES_PAGE_SIZE

