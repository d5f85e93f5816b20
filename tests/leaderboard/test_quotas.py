"""Quotas on GPU time and on accounts, one test per limit, through the real pages and API:
per-address submissions (the per-account limit is tests/leaderboard/test_forms.py's
test_rate_limit_per_user_per_day), the global queue budget of estimated GPU-hours, the claimed
base's size, sign-up and login throttles (django-ratelimit), and the card-claims reader's caps and
its place off the request path. Then the flood script of performance/ against the real database,
many accounts and addresses at once."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from django.test import Client, override_settings

from leaderboard.models import ModelSubmission
from leaderboard.services import card_claims as card_claims_service
from leaderboard.services import hub, quotas
from leaderboard.services.ownership import owner_token_for
from leaderboard.services.submissions import gpu_hours_in_flight
from tests.browser.site_data import CARD_WITH_MODEL_INDEX, EVAL_RESULTS_GSM8K, card_claims_page, install_card_repo

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def account(django_user_model, name: str, address: str = "198.51.100.7") -> Client:
    client = Client(REMOTE_ADDR=address)
    client.user = django_user_model.objects.create_user(name, password="pw-Quota-12345")
    client.force_login(client.user)
    return client


def owned_repo(hf_cache, tmp_path, client, repo_id: str, **extra) -> str:
    return install_card_repo(hf_cache, tmp_path, repo_id, owner_token=owner_token_for(client.user), **extra)


def submit(client, repo_id: str, **overrides):
    data = {"repo_id": repo_id, "revision": "main", "training": "full", "score_gsm8k": "50"}
    data.update(overrides)
    return client.post("/submit/", data)


@override_settings(SUBMISSIONS_PER_IP_PER_DAY=2)
def test_submissions_per_client_address(django_user_model, hf_cache, tmp_path):
    first, second = account(django_user_model, "first"), account(django_user_model, "second")
    for client, repo_id in ((first, "first/a"), (second, "second/a")):
        owned_repo(hf_cache, tmp_path, client, repo_id)
        assert submit(client, repo_id).status_code == 302
    owned_repo(hf_cache, tmp_path, second, "second/b")
    refused = submit(second, "second/b")
    assert refused.status_code == 400 and "came from your address" in refused.content.decode()
    elsewhere = account(django_user_model, "third", address="203.0.113.9")
    owned_repo(hf_cache, tmp_path, elsewhere, "third/a")
    assert submit(elsewhere, "third/a").status_code == 302
    assert list(ModelSubmission.objects.values_list("submitter_ip", flat=True).order_by("id")) == [
        "198.51.100.7", "198.51.100.7", "203.0.113.9"]


@pytest.mark.parametrize("proxies, forwarded, expected", [
    (0, "1.2.3.4", "10.0.0.1"),  # no proxy trusted: a client's own header is ignored
    (1, "1.2.3.4", "1.2.3.4"),
    (1, "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # what the client wrote on the left is not trusted
    (2, "6.6.6.6, 1.2.3.4, 10.0.0.9", "1.2.3.4"),
    (1, "not-an-address", "10.0.0.1"),
])
def test_the_client_address_behind_trusted_proxies(rf, settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXIES = proxies
    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert quotas.client_ip(request) == expected


def test_the_queue_budget_holds_and_frees_as_runs_finish(django_user_model, hf_cache, tmp_path, settings):
    client = account(django_user_model, "busy")
    for name in ("a", "b", "c"):
        owned_repo(hf_cache, tmp_path, client, f"busy/{name}")
    assert submit(client, "busy/a").status_code == 302
    per_submission = ModelSubmission.objects.get().gpu_hours_estimate
    assert per_submission > 0
    settings.QUEUE_GPU_HOURS = per_submission * 2.5
    assert submit(client, "busy/b").status_code == 302
    refused = submit(client, "busy/c")
    assert refused.status_code == 400 and "queue is full" in refused.content.decode()
    assert gpu_hours_in_flight() <= settings.QUEUE_GPU_HOURS
    ModelSubmission.objects.filter(repo_id="busy/a").update(status=ModelSubmission.Status.VERIFIED)
    assert submit(client, "busy/c").status_code == 302


def test_the_estimate_grows_with_the_model_its_base_and_the_plan():
    small = quotas.estimate_gpu_hours(1 * 10**9, 0, 4, None)
    assert quotas.estimate_gpu_hours(16 * 10**9, 0, 4, None) > small
    assert quotas.estimate_gpu_hours(16 * 10**9, 16 * 10**9, 4, None) > quotas.estimate_gpu_hours(16 * 10**9, 0, 4, None)
    assert quotas.estimate_gpu_hours(16 * 10**9, 0, 4, 50) < quotas.estimate_gpu_hours(16 * 10**9, 0, 4, None)
    assert 0.2 < quotas.estimate_gpu_hours(16 * 10**9, 0, 4, None) < 1.5  # an 8B model on 4 benchmarks


def test_the_claimed_base_is_capped_in_size(django_user_model, hf_cache, tmp_path, settings):
    client = account(django_user_model, "tuner")
    owned_repo(hf_cache, tmp_path, client, "tuner/model")
    install_card_repo(hf_cache, tmp_path, "giant/base", extra={"model.safetensors": b"\0" * 64 * 1024})
    install_card_repo(hf_cache, tmp_path, "small/base")
    settings.MAX_BASE_BYTES = 32 * 1024
    refused = submit(client, "tuner/model", base_model="giant/base")
    assert refused.status_code == 400 and "Verity measures claimed bases up to" in refused.content.decode()
    assert submit(client, "tuner/model", base_model="small/base").status_code == 302
    submission = ModelSubmission.objects.get()
    assert submission.claimed_base == "small/base" and submission.gpu_hours_estimate > 0


@override_settings(SIGNUP_RATE="2/h")
def test_sign_up_is_throttled_per_address():
    client = Client(REMOTE_ADDR="192.0.2.10")
    for n in range(2):
        client.logout()
        response = client.post("/accounts/signup/", {"username": f"new{n}", "password1": "a-Long-pass-9876",
                                                     "password2": "a-Long-pass-9876"})
        assert response.status_code == 302
    client.logout()
    third = client.post("/accounts/signup/", {"username": "new2", "password1": "a-Long-pass-9876",
                                              "password2": "a-Long-pass-9876"})
    assert third.status_code == 429 and "Too many sign-up attempts" in third.content.decode()
    other = Client(REMOTE_ADDR="192.0.2.11").post("/accounts/signup/", {
        "username": "new3", "password1": "a-Long-pass-9876", "password2": "a-Long-pass-9876"})
    assert other.status_code == 302


@override_settings(LOGIN_RATE="3/m")
def test_login_is_throttled_per_address_and_per_username(django_user_model):
    django_user_model.objects.create_user("victim", password="pw-Right-12345")
    guesser = Client(REMOTE_ADDR="192.0.2.20")
    for guess in ("a", "b", "c"):
        assert guesser.post("/accounts/login/", {"username": "victim", "password": guess}).status_code == 200
    blocked = guesser.post("/accounts/login/", {"username": "victim", "password": "pw-Right-12345"})
    assert blocked.status_code == 429 and "Too many login attempts" in blocked.content.decode()
    # a botnet spreading the guesses over addresses still meets the per-username limit
    elsewhere = Client(REMOTE_ADDR="192.0.2.21").post("/accounts/login/", {"username": "victim", "password": "d"})
    assert elsewhere.status_code == 429
    django_user_model.objects.create_user("someone", password="pw-Other-12345")
    fine = Client(REMOTE_ADDR="192.0.2.22").post("/accounts/login/", {"username": "someone", "password": "pw-Other-12345"})
    assert fine.status_code == 302


def test_the_card_reader_is_capped_in_size_and_count(django_user_model, hf_cache, tmp_path):
    client = account(django_user_model, "reader")
    huge_card = CARD_WITH_MODEL_INDEX + "x" * card_claims_service.MAX_CARD_BYTES  # states mmlu, past the cap
    many = {f".eval_results/{n:02d}-empty.yaml": "[]\n" for n in range(card_claims_service.MAX_EVAL_RESULT_FILES)}
    install_card_repo(hf_cache, tmp_path, "acme/many-files", eval_results=None, readme=huge_card,
                      extra={**many, ".eval_results/zz-gsm8k.yaml": EVAL_RESULTS_GSM8K})
    html = card_claims_page(client, "repo_id=acme/many-files")
    assert 'id="card-claims-none"' in html  # the 17th file is never read, nor the oversized card
    install_card_repo(hf_cache, tmp_path, "acme/card-within-caps", eval_results=None)
    html = card_claims_page(client, "repo_id=acme/card-within-caps")
    assert 'data-benchmark="mmlu"' in html  # the same card within the cap is read
    big_result = EVAL_RESULTS_GSM8K + "# " + "x" * card_claims_service.MAX_EVAL_RESULT_BYTES + "\n"
    install_card_repo(hf_cache, tmp_path, "acme/big-result", eval_results=big_result)
    html = card_claims_page(client, "repo_id=acme/big-result")
    assert 'data-benchmark="mmlu"' in html and 'data-benchmark="gsm8k"' not in html


def test_the_card_reader_runs_off_the_request_path(django_user_model, hf_cache, tmp_path, monkeypatch):
    client = account(django_user_model, "waiter")
    install_card_repo(hf_cache, tmp_path, "acme/slow-card")
    real_repo_at = hub.repo_at

    def slow_hub(repo_id, revision):
        time.sleep(card_claims_service.CARD_WAIT_S + 1.5)  # a slow or stalled Hub
        return real_repo_at(repo_id, revision)

    monkeypatch.setattr(hub, "repo_at", slow_hub)
    started = time.monotonic()
    first = client.get("/submit/card-claims?repo_id=acme/slow-card")
    assert time.monotonic() - started < card_claims_service.CARD_WAIT_S + 1.0  # the request did not wait it out
    assert first.status_code == 202 and 'id="card-claims-pending"' in first.content.decode()
    assert 'hx-trigger="load delay:2s"' in first.content.decode()  # the page asks again
    assert 'data-benchmark="gsm8k" data-score="71.5"' in card_claims_page(client, "repo_id=acme/slow-card")


def _flood_script():
    spec = importlib.util.spec_from_file_location("submission_flood", REPO_ROOT / "performance" / "submission_flood.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.django_db(transaction=True)
def test_a_flood_from_many_accounts_and_addresses_stays_within_the_budget(hf_cache, tmp_path, settings, monkeypatch):
    from leaderboard.services import submissions

    monkeypatch.setattr(submissions, "send", lambda *task: None)  # no broker: nothing consumes this queue
    settings.QUEUE_GPU_HOURS, settings.SUBMISSIONS_PER_DAY, settings.SUBMISSIONS_PER_IP_PER_DAY = 1.0, 3, 1000
    flood = _flood_script()
    accounts = flood.prepare_accounts(hf_cache, tmp_path / "repos", n_accounts=12, per_account=4)
    summary = flood.flood(accounts, n_ips=4, n_threads=6)
    outcomes = summary["outcomes"]
    assert summary["requests"] == 48 and sum(outcomes.values()) == 48
    assert outcomes["accepted"] >= 5 and outcomes["queue budget"] >= 10
    assert set(outcomes) <= {"accepted", "queue budget", "per-account limit"}
    assert summary["peak_in_flight_gpu_hours"] <= 1.0 and summary["in_flight_gpu_hours"] <= 1.0
    assert ModelSubmission.objects.count() == outcomes["accepted"]
