"""Sign-up and the submit form: every bad value gets a clear 4xx message and writes nothing; a
good submission stores the claims and queues verification once committed."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from leaderboard.models import Claim, ModelSubmission
from leaderboard.services.ownership import owner_token_for
from tests.browser.site_data import card_claims_page, install_card_repo

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests that create users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REPO = "acme/card-model"


@pytest.fixture
def author_client(client, django_user_model):
    user = django_user_model.objects.create_user("author", password="pw-Author-123")
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def card_repo(hf_cache, tmp_path, author_client) -> str:
    """The author's repo: it holds their owner token, so their author submissions are accepted."""
    return install_card_repo(hf_cache, tmp_path, REPO, owner_token=owner_token_for(author_client.user))


def form_data(**overrides) -> dict:
    data = {"repo_id": REPO, "revision": "main", "training": "full", "score_gsm8k": "71.5", "shots_gsm8k": "5",
            "cot_gsm8k": "true", "chat_gsm8k": ""}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_signup_creates_and_logs_in_the_user(client):
    response = client.post("/accounts/signup/", {"username": "newcomer", "password1": "a-Long-pass-9876",
                                                 "password2": "a-Long-pass-9876"})
    assert response.status_code == 302 and response["Location"] == "/submit/"
    assert client.get("/submit/").status_code == 200  # logged in


@pytest.mark.parametrize(
    "data, message",
    [
        ({"username": "x", "password1": "a-Long-pass-9876", "password2": "different-Pass-1"}, "didn’t match"),
        ({"username": "bad name!", "password1": "a-Long-pass-9876", "password2": "a-Long-pass-9876"}, "valid username"),
        ({"username": "short", "password1": "abc", "password2": "abc"}, "too short"),
    ],
)
def test_signup_rejects_bad_values(client, data, message):
    response = client.post("/accounts/signup/", data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not get_user_model().objects.exists()


def test_submit_requires_login(client):
    response = client.get("/submit/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_submit_creates_submission_with_claims_and_queues_on_commit(author_client, card_repo,
                                                                    django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = author_client.post("/submit/", form_data(score_mmlu="61.2", base_model="acme/base-model"))
    submission = ModelSubmission.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/submissions/{submission.pk}/"
    assert submission.submitter == author_client.user and submission.pinned_sha == card_repo
    assert submission.claimed_base == "acme/base-model" and submission.training == "full"
    claims = {c.benchmark: c for c in Claim.objects.filter(submission=submission)}
    assert set(claims) == {"gsm8k", "mmlu"}
    assert claims["gsm8k"].setup() == {"shots": 5, "cot": True} and claims["gsm8k"].score == 71.5
    assert len(callbacks) == 1  # verify_submission.delay(id), only after the commit


BAD_SUBMISSIONS = [
    ({"repo_id": "not a repo"}, "is not a valid Hugging Face repo id"),
    ({"repo_id": "acme--x/y"}, "is not a valid Hugging Face repo id"),
    ({"repo_id": ""}, "This field is required"),
    ({"repo_id": "acme/not-in-cache"}, "not in the local Hugging Face cache"),
    ({"revision": "no-such-branch"}, "not in the local cache"),
    ({"revision": "has space"}, "not a valid branch"),
    ({"score_gsm8k": "120"}, "outside 0–100"),
    ({"score_gsm8k": "-1"}, "outside 0–100"),
    ({"score_gsm8k": "lots"}, "Enter a number"),
    ({"score_gsm8k": None, "shots_gsm8k": None, "cot_gsm8k": None}, "Claim at least one benchmark"),
    ({"shots_gsm8k": "500"}, "shots must be an integer from 0 to 64"),
    ({"cot_gsm8k": "maybe"}, "Select a valid choice"),
    ({"base_model": "no slash"}, "is not a valid Hugging Face repo id"),
    ({"endpoint": "ftp://example.org/v1"}, "must be an http(s) URL"),
    ({"training": "magic"}, "Select a valid choice"),
]


@pytest.mark.parametrize("overrides, message", BAD_SUBMISSIONS)
def test_submit_rejects_bad_values_and_writes_nothing(author_client, card_repo, overrides, message):
    response = author_client.post("/submit/", form_data(**overrides))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ModelSubmission.objects.exists() and not Claim.objects.exists()


def test_duplicate_pending_submission_of_the_same_sha_is_refused(author_client, card_repo):
    assert author_client.post("/submit/", form_data()).status_code == 302
    again = author_client.post("/submit/", form_data(score_gsm8k="80"))
    assert again.status_code == 400 and "is already waiting for verification" in again.content.decode()
    assert ModelSubmission.objects.count() == 1


def test_a_finished_submission_can_be_resubmitted(author_client, card_repo):
    assert author_client.post("/submit/", form_data()).status_code == 302
    ModelSubmission.objects.update(status="verified")
    assert author_client.post("/submit/", form_data()).status_code == 302


@override_settings(SUBMISSIONS_PER_DAY=2)
def test_rate_limit_per_user_per_day(author_client, card_repo, hf_cache, tmp_path):
    for marker in ("a", "b"):
        install_card_repo(hf_cache, tmp_path, f"acme/model-{marker}", marker=marker,
                          owner_token=owner_token_for(author_client.user))
        assert author_client.post("/submit/", form_data(repo_id=f"acme/model-{marker}")).status_code == 302
    response = author_client.post("/submit/", form_data())
    assert response.status_code == 400 and "the limit is 2 per day" in response.content.decode()
    assert ModelSubmission.objects.count() == 2


def test_card_claims_are_offered_from_eval_results_and_model_index(author_client, card_repo):
    html = card_claims_page(author_client, f"repo_id={REPO}&revision=main")
    assert 'data-benchmark="gsm8k" data-score="71.5"' in html  # .eval_results/gsm8k.yaml
    assert 'data-benchmark="mmlu" data-score="61.2"' in html  # model-index 0.612, read as a fraction
    assert "unknown-bench" not in html  # not a benchmark Verity measures


def test_card_claims_bad_repo_id_is_a_400(author_client):
    response = author_client.get("/submit/card-claims?repo_id=bad&revision=main")
    assert response.status_code == 400 and "not a valid Hugging Face repo id" in response.content.decode()


def test_card_without_scores_offers_nothing(author_client, hf_cache, tmp_path):
    install_card_repo(hf_cache, tmp_path, "acme/plain", readme="# plain\n", eval_results=None)
    html = card_claims_page(author_client, "repo_id=acme/plain")
    assert 'id="card-claims-none"' in html


def test_hostile_eval_results_file_is_skipped(author_client, hf_cache, tmp_path):
    install_card_repo(hf_cache, tmp_path, "acme/hostile", eval_results="!!python/object:os.system ['echo']\n: [")
    html = card_claims_page(author_client, "repo_id=acme/hostile")
    assert 'data-benchmark="mmlu"' in html and 'data-benchmark="gsm8k"' not in html
