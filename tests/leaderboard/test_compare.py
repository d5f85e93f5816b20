"""The compare page: side by side, the paired difference only on the same items, bad input
answered with a clear 400, query count bounded."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache

from leaderboard.models import BenchmarkResult, SampleResult
from leaderboard.services import compare
from tests.browser.site_data import flag, publish
from verification import paired

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def samples(outcomes: str, prefix: str = "gsm8k-") -> list[dict]:
    return [{"item_id": f"{prefix}{i}", "correct": c == "1", "score": float(c == "1")} for i, c in enumerate(outcomes)]


# 40 items: A right on 30, B right on 20; A-only 12, B-only 2 (both right on 18).
A_ITEMS = "1" * 18 + "1" * 12 + "0" * 2 + "0" * 8
B_ITEMS = "1" * 18 + "0" * 12 + "1" * 2 + "0" * 8


@pytest.fixture
def pair():
    a = publish("acme/alpha", {"gsm8k": (30, 40), "mmlu": (6, 10)}, claims={"gsm8k": 76.0},
                samples={"gsm8k": samples(A_ITEMS)})
    b = publish("acme/beta", {"gsm8k": (20, 40), "mmlu": (5, 10)}, samples={"gsm8k": samples(B_ITEMS)})
    flag(b)
    return a, b


def test_check_compare_models_refuses_bad_input():
    assert compare.check_compare_models(" acme/a , acme/b ") == ["acme/a", "acme/b"]
    for raw, message in [
        (None, "Name 2 to 4"), ("", "Name 2 to 4"), ("acme/a", "not 1"), ("acme/a,acme/a", "named twice"),
        ("a/1,a/2,a/3,a/4,a/5", "not 5"), ("acme/a,<script>", "Not a model id"), ("acme/a,../../etc", "Not a model id"),
        ("x" * 2000, "too long"),
    ]:
        with pytest.raises(compare.CompareError, match=message):
            compare.check_compare_models(raw)


def test_paired_difference_of_two_models_on_the_same_items(client, pair):
    page = client.get("/compare/?models=acme/alpha,acme/beta")
    assert page.status_code == 200
    html = page.content.decode()
    row = re.search(r'<tr data-benchmark="gsm8k">(.*?)</tr>', html, re.S).group(1)
    expected = paired.paired_difference([int(c) for c in A_ITEMS], [int(c) for c in B_ITEMS])
    assert expected.diff == pytest.approx(25.0) and expected.a_only == 12 and expected.b_only == 2
    assert f"+{expected.diff:.1f} [+{expected.ci_low:.1f}, +{expected.ci_high:.1f}]" in row
    assert "12 items only A right, 2 only B right" in row
    assert f"McNemar exact p = {expected.p_value:.2g}" in row
    # mmlu has no per-item records here: no number invented.
    mmlu = re.search(r'<tr data-benchmark="mmlu">(.*?)</tr>', html, re.S).group(1)
    assert "not comparable: per-item records incomplete" in mmlu
    # Side by side: the claim, status and the flag are shown.
    assert "76.0" in row and "badge-flagged" in html and "score_mismatch" in html


def test_items_differ_means_not_comparable(client):
    publish("acme/alpha", {"gsm8k": (30, 40)}, samples={"gsm8k": samples(A_ITEMS)})
    publish("acme/gamma", {"gsm8k": (20, 40)}, samples={"gsm8k": samples(B_ITEMS, prefix="other-")})
    html = client.get("/compare/?models=acme/alpha,acme/gamma").content.decode()
    assert "not comparable: different items" in html and "McNemar" not in html.split("<small>A is the first")[0]


def test_different_version_or_setup_is_not_comparable(pair):
    a, b = pair
    result = BenchmarkResult.objects.get(run__submission=b, benchmark="gsm8k")
    result.benchmark_version = "2"
    result.save()
    comparison = compare.compare_models(["acme/alpha", "acme/beta"])
    gsm8k = next(row for row in comparison.rows if row.benchmark == "gsm8k")
    assert gsm8k.pairs[0].difference is None
    assert gsm8k.pairs[0].not_comparable == "different items: gsm8k version 1 vs 2"
    result.benchmark_version = "1"
    result.setup_key = '{"chat_template":false,"cot":true,"shots":0}'
    result.save()
    comparison = compare.compare_models(["acme/alpha", "acme/beta"])
    gsm8k = next(row for row in comparison.rows if row.benchmark == "gsm8k")
    assert gsm8k.pairs[0].not_comparable == "different items: measured under different setups"


def test_same_accuracy_is_no_significant_difference(client):
    # Both 50%: the paired difference is 0 and says so, whatever the per-model intervals.
    publish("acme/left", {"gsm8k": (20, 40)}, samples={"gsm8k": samples("10" * 20)})
    publish("acme/right", {"gsm8k": (20, 40)}, samples={"gsm8k": samples("01" * 20)})
    comparison = compare.compare_models(["acme/left", "acme/right"])
    difference = comparison.rows[0].pairs[0].difference
    assert difference.diff == 0.0 and not difference.significant and difference.p_value == 1.0


def test_incomplete_per_item_records_are_not_paired(pair):
    a, _ = pair
    SampleResult.objects.filter(run__submission=a, index=0).delete()
    comparison = compare.compare_models(["acme/alpha", "acme/beta"])
    gsm8k = next(row for row in comparison.rows if row.benchmark == "gsm8k")
    assert gsm8k.pairs[0].not_comparable == "per-item records incomplete"


@pytest.mark.parametrize("query,status,message", [
    ("", 400, "Name 2 to 4 models"),
    ("?models=acme/alpha", 400, "not 1"),
    ("?models=acme/alpha,%3Cscript%3Ealert(1)%3C/script%3E", 400, "Not a model id"),
    ("?models=acme/alpha,nobody/nothing", 404, "No model &#x27;nobody/nothing&#x27; on Verity."),
])
def test_bad_compare_requests_get_a_clear_page(client, pair, query, status, message):
    response = client.get("/compare/" + query)
    assert response.status_code == status
    html = response.content.decode()
    assert message in html and "<script>alert" not in html and "Traceback" not in html


def test_three_models_pair_with_the_first(client, pair):
    publish("acme/third", {"gsm8k": (20, 40)}, samples={"gsm8k": samples(B_ITEMS)})
    comparison = compare.compare_models(["acme/alpha", "acme/beta", "acme/third"])
    gsm8k = next(row for row in comparison.rows if row.benchmark == "gsm8k")
    assert [(p.a, p.b) for p in gsm8k.pairs] == [("acme/alpha", "acme/beta"), ("acme/alpha", "acme/third")]
    assert gsm8k.pairs[0].difference.diff == gsm8k.pairs[1].difference.diff == pytest.approx(25.0)


def test_compare_query_count_is_bounded(client):
    """A fixed number of queries whatever the number of items and benchmarks: the per-item rows
    are summed in the database, one query per pair of models for all benchmarks."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    benchmarks = ("gsm8k", "mmlu", "arc_challenge", "ifeval")
    counts = []
    for size, prefix in ((40, "small"), (80, "large")):
        for name in ("a", "b", "c", "d"):
            publish(f"{prefix}/{name}", {slug: (size // 2, size) for slug in benchmarks},
                    samples={slug: samples(("10" * size)[:size], prefix=f"{slug}-") for slug in benchmarks})
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/compare/?models={prefix}/a,{prefix}/b,{prefix}/c,{prefix}/d")
        assert response.status_code == 200
        assert response.content.decode().count('class="paired-diff"') == 12  # 4 benchmarks x 3 pairs
        counts.append(len(queries))
    # Four reads for all the models together, at most two per model for a base measured apart
    # (its report has no base section), one paired query per pair of models.
    assert counts[0] == counts[1] <= 4 + 2 * 4 + 3


def test_partial_credit_is_paired_from_sql_sums_like_the_engine_does():
    scores_a = [1.0, 0.5, 0.25, 0.0, 0.75, 1.0, 0.5, 0.0]
    scores_b = [0.5, 0.5, 0.0, 0.25, 0.75, 0.0, 1.0, 0.0]
    rows = lambda scores: [{"item_id": f"mc2-{i}", "correct": s >= 0.5, "score": s} for i, s in enumerate(scores)]  # noqa: E731
    publish("acme/mc-a", {"truthfulqa_mc2": (4, 8)}, samples={"truthfulqa_mc2": rows(scores_a)})
    publish("acme/mc-b", {"truthfulqa_mc2": (3, 8)}, samples={"truthfulqa_mc2": rows(scores_b)})
    comparison = compare.compare_models(["acme/mc-a", "acme/mc-b"])
    difference = comparison.rows[0].pairs[0].difference
    expected = paired.paired_difference(scores_a, scores_b)
    assert difference.method == "paired_normal" and difference.p_value is None
    assert difference.diff == pytest.approx(expected.diff)
    assert (difference.ci_low, difference.ci_high) == (pytest.approx(expected.ci_low), pytest.approx(expected.ci_high))


def test_benchmarks_summed_in_one_query_stay_apart():
    """The paired sums of every benchmark come from one query: a defect in one benchmark's
    records (an item missing) makes that benchmark "not comparable" and changes no other's sums."""
    # The same item ids in both benchmarks: sums grouped by item id alone would mix them.
    gsm8k_a, gsm8k_b = samples(A_ITEMS, prefix="item-"), samples(B_ITEMS, prefix="item-")
    arc_a, arc_b = samples(B_ITEMS, prefix="item-"), samples(A_ITEMS, prefix="item-")
    publish("acme/one", {"gsm8k": (30, 40), "arc_challenge": (20, 40)}, samples={"gsm8k": gsm8k_a, "arc_challenge": arc_a})
    publish("acme/two", {"gsm8k": (20, 40), "arc_challenge": (30, 40), "mmlu": (5, 10)},
            samples={"gsm8k": gsm8k_b, "arc_challenge": arc_b})
    SampleResult.objects.filter(run__submission__repo_id="acme/two", benchmark="gsm8k", index=0).delete()
    rows = {row.benchmark: row.pairs[0] for row in compare.compare_models(["acme/one", "acme/two"]).rows}
    assert rows["gsm8k"].not_comparable == "per-item records incomplete"
    expected = paired.paired_difference([int(c) for c in B_ITEMS], [int(c) for c in A_ITEMS])
    assert rows["arc_challenge"].difference.diff == pytest.approx(expected.diff) == pytest.approx(-25.0)
    assert (rows["arc_challenge"].difference.a_only, rows["arc_challenge"].difference.b_only) == (2, 12)
    assert rows["mmlu"].not_comparable == "measured on one model only"


def test_overlapping_but_different_item_sets_are_not_paired():
    publish("acme/first", {"gsm8k": (2, 4)}, samples={"gsm8k": samples("1100")})
    shifted = samples("1100")
    shifted[3]["item_id"] = "gsm8k-99"
    publish("acme/second", {"gsm8k": (2, 4)}, samples={"gsm8k": shifted})
    comparison = compare.compare_models(["acme/first", "acme/second"])
    assert comparison.rows[0].pairs[0].not_comparable == "different items"
