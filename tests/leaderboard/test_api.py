"""The JSON API: public reads (leaderboard, model, flags, CSV, .eval_results YAML), token-authenticated
submissions with every bad input answered by a clear 4xx and nothing written."""

from __future__ import annotations

import csv
import hashlib
import io

import pytest
import yaml
from django.core.cache import cache
from huggingface_hub import parse_eval_result_entries

from leaderboard.models import ApiToken, Claim, Flag, ModelSubmission
from leaderboard.services.ownership import owner_token_for
from tests.browser.site_data import flag, install_card_repo, publish

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests that create users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REPO = "acme/api-model"
KEY = "vty_test-key-0123456789abcdefghijklmnopqrstuv"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("api-user", password="pw-Api-12345")


@pytest.fixture
def token(user) -> ApiToken:
    return ApiToken.objects.create(user=user, name="ci", prefix=KEY[:12], key_hash=hashlib.sha256(KEY.encode()).hexdigest())


@pytest.fixture
def card_repo(hf_cache, tmp_path, user) -> str:
    """The API user's repo: it holds their owner token, so their author submissions are accepted."""
    return install_card_repo(hf_cache, tmp_path, REPO, owner_token=owner_token_for(user))


@pytest.fixture
def board(user):
    flagged = publish("acme/flagged", {"gsm8k": (9, 10), "mmlu": (7, 10)}, claims={"gsm8k": 99.0},
                      verdicts={"gsm8k": "inconsistent"}, user=user)
    flag(flagged)
    flag(flagged, kind=Flag.Kind.LORA_MERGE, severity="info", status=Flag.Status.DISMISSED, reason="noise")
    publish("acme/clean", {"gsm8k": (6, 10), "mmlu": (6, 10)}, claims={"gsm8k": 61.0})
    return flagged


def post(client, data, key: str | None = KEY):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post("/api/submissions", data=data, content_type="application/json", **headers)


def test_leaderboard_json_is_ranked_and_filterable(client, board, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        body = client.get("/api/leaderboard").json()
    assert [r["repo_id"] for r in body["results"]] == ["acme/flagged", "acme/clean"]
    assert body["results"][0]["badge"] == "flagged" and body["results"][0]["max_delta"] == pytest.approx(9.0)
    assert body["results"][0]["url"] == "/models/acme/flagged/"
    assert [r["repo_id"] for r in client.get("/api/leaderboard?hide_flagged=true").json()["results"]] == ["acme/clean"]


@pytest.mark.parametrize("query, status, message", [
    ("sort=drop+table", 400, "unknown sort column"),
    ("page=-1", 400, "greater than or equal to 1"),
    ("page=7", 404, "past the end"),
])
def test_leaderboard_json_bad_parameters(client, board, query, status, message):
    response = client.get(f"/api/leaderboard?{query}")
    assert response.status_code == status and message in response.json()["detail"]


def test_leaderboard_csv_export(client, board):
    response = client.get("/api/leaderboard.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["repo_id"] for r in rows] == ["acme/flagged", "acme/clean"]
    assert rows[0]["gsm8k"] == "90.00" and rows[0]["badge"] == "flagged"
    assert client.get("/api/leaderboard.csv?sort=bogus").status_code == 400


def test_model_detail_and_public_flags(client, board):
    body = client.get("/api/models/acme/flagged").json()
    assert body["entry"]["average"] == pytest.approx(80.0)
    assert {r["benchmark"]: r["verdict"] for r in body["results"]} == {"gsm8k": "inconsistent", "mmlu": "unclaimed"}
    # open flag public as "under review"; the dismissed info flag is not shown
    assert [(f["kind"], f["public_state"]) for f in body["flags"]] == [("score_mismatch", "under review")]
    flags = client.get("/api/flags?repo_id=acme/flagged").json()
    assert [f["public_state"] for f in flags] == ["under review"]
    assert client.get("/api/flags?status=bogus").status_code == 422
    assert client.get("/api/flags?limit=100000").status_code == 422
    assert client.get("/api/models/nobody/nothing").status_code == 404


def test_eval_results_export_in_hub_shape(client, board):
    response = client.get("/api/models/acme/clean/eval_results.yaml")
    entries = parse_eval_result_entries(yaml.safe_load(response.content))
    by_dataset = {e.dataset_id: e for e in entries}
    assert by_dataset["openai/gsm8k"].value == pytest.approx(60.0)
    assert by_dataset["openai/gsm8k"].task_id == "gsm8k"  # the task id of the Hub's GSM8K benchmark
    assert "95% CI" in by_dataset["openai/gsm8k"].notes and by_dataset["cais/mmlu"].value == pytest.approx(60.0)


def test_openapi_docs_are_served(client):
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.content.decode().lower()  # Swagger UI from static files: works offline
    paths = client.get("/api/openapi.json").json()["paths"]
    assert {"/api/leaderboard", "/api/submissions", "/api/flags"} <= set(paths)


def test_create_submission_with_token(client, token, card_repo, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, {"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": 71.5, "shots": 8}]})
    assert response.status_code == 201, response.content
    body = response.json()
    submission = ModelSubmission.objects.get(pk=body["id"])
    assert submission.submitter == token.user and submission.pinned_sha == card_repo
    assert body["claims"] == [{"benchmark": "gsm8k", "score": 71.5, "shots": 8}]
    assert len(callbacks) == 1
    token.refresh_from_db()
    assert token.last_used is not None
    status = client.get(f"/api/submissions/{submission.pk}").json()
    assert status["status"] == "received" and status["run"] is None


@pytest.mark.parametrize("key", [None, "vty_wrong", ""])
def test_create_submission_needs_a_valid_token(client, key, card_repo):
    response = post(client, {"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": 50}]}, key=key)
    assert response.status_code == 401
    assert not ModelSubmission.objects.exists()


BAD_PAYLOADS = [
    ({"repo_id": REPO, "claims": [{"benchmark": "hellaswag", "score": 80}]}, 400, "unknown benchmark 'hellaswag'"),
    ({"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": 150}]}, 400, "outside 0–100"),
    ({"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": "high"}]}, 400, "must be a number"),
    ({"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": 5, "seed": 1}]}, 400, "unknown key(s) seed"),
    ({"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": 5}, {"benchmark": "gsm8k", "score": 6}]}, 400,
     "claimed twice"),
    ({"repo_id": REPO, "claims": []}, 400, "Claim at least one benchmark"),
    ({"repo_id": "../etc/passwd", "claims": [{"benchmark": "gsm8k", "score": 5}]}, 400, "not a valid Hugging Face"),
    ({"repo_id": REPO, "revision": "nope", "claims": [{"benchmark": "gsm8k", "score": 5}]}, 400, "not in the local cache"),
    ({"repo_id": REPO, "training": "vibes", "claims": [{"benchmark": "gsm8k", "score": 5}]}, 400, "'training' must be"),
    ({"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": 5}], "admin": True}, 422, "admin"),
    ({"repo_id": REPO, "claims": "gsm8k=5"}, 422, "claims"),
    ({"claims": [{"benchmark": "gsm8k", "score": 5}]}, 422, "repo_id"),
]


@pytest.mark.parametrize("payload, status, message", BAD_PAYLOADS)
def test_create_submission_bad_payloads(client, token, card_repo, payload, status, message):
    response = post(client, payload)
    assert response.status_code == status
    assert message in str(response.json())
    assert not ModelSubmission.objects.exists() and not Claim.objects.exists()


def test_malformed_json_is_a_4xx(client, token):
    response = client.post("/api/submissions", data="{not json", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {KEY}")
    assert 400 <= response.status_code < 500
    assert not ModelSubmission.objects.exists()


def test_unknown_submission_is_404(client):
    assert client.get("/api/submissions/999999").status_code == 404


def test_model_detail_and_flags_have_bounded_queries(client, board, django_assert_max_num_queries):
    for _ in range(10):
        flag(board, severity="warning", benchmark="mmlu")
    with django_assert_max_num_queries(9):  # constant: submission, runs, claims, progress, results, entry, flags
        assert len(client.get("/api/models/acme/flagged").json()["flags"]) == 11
    with django_assert_max_num_queries(1):
        assert len(client.get("/api/flags").json()) == 11
