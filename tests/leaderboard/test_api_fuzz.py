"""Every malformed API request gets a 4xx with a clear message: first the named cases (wrong types,
numbers too large for a float, control characters, ids past the database's integers), then a
schemathesis fuzz run over every operation of /api/openapi.json, positive and negative cases,
through the real WSGI application and database: no response may be a 5xx."""

from __future__ import annotations

import hashlib

import pytest
from django.core.cache import cache

from leaderboard.models import ApiToken, Claim, ModelSubmission
from leaderboard.services.ownership import owner_token_for
from tests.browser.site_data import install_card_repo

REPO = "acme/fuzz-model"
KEY = "vty_fuzz-key-0123456789abcdefghijklmnopqrstuvw"
# Examples per operation and generation mode; the whole run stays well under a minute.
FUZZ_EXAMPLES = 50


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def token(django_user_model) -> ApiToken:
    user = django_user_model.objects.create_user("fuzzer", password="pw-Fuzz-12345")
    return ApiToken.objects.create(user=user, name="fuzz", prefix=KEY[:12], key_hash=hashlib.sha256(KEY.encode()).hexdigest())


@pytest.fixture
def card_repo(hf_cache, tmp_path, token) -> str:
    return install_card_repo(hf_cache, tmp_path, REPO, owner_token=owner_token_for(token.user))


def post(client, data):
    return client.post("/api/submissions", data=data, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {KEY}")


def claim(**fields):
    return {"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": 50, **fields}]}


MALFORMED = [
    (claim(source_url=5), 400, "claims[0].source_url must be a string"),
    (claim(source_url=["http://x"]), 400, "claims[0].source_url must be a string"),
    (claim(score=10**400), 400, "claims[0].score is not a finite number"),
    (claim(score=-(10**400)), 400, "claims[0].score is not a finite number"),
    (claim(score=True), 400, "claims[0].score must be a number"),
    (claim(score=None), 400, "must be a number"),
    (claim(shots=2.5), 400, "claims[0].shots must be a whole number"),
    (claim(shots=10**400), 400, "shots must be an integer from 0 to 64"),
    (claim(cot="yes"), 400, "claims[0].cot must be true or false"),
    (claim(benchmark=7), 400, "claims[0].benchmark must be a string"),
    (claim(source_url="http://example.org/\u0000"), 400, "control characters"),
    ({"repo_id": REPO, "claims": ["gsm8k"]}, 422, "valid dictionary"),
    ({"repo_id": REPO, "claims": [{"benchmark": "gsm8k", "score": 50}], "endpoint_model": "m\u0000"}, 400,
     "endpoint_model contains control characters"),
    ({"repo_id": REPO, "kind": "owner", "claims": [{"benchmark": "gsm8k", "score": 50}]}, 400, "kind must be one of"),
    ({"repo_id": 5, "claims": []}, 422, "repo_id"),
    ({"repo_id": REPO, "training": ["full"], "claims": []}, 422, "training"),
    ({"repo_id": REPO, "revision": {"sha": "x"}, "claims": []}, 422, "revision"),
    ({"repo_id": "acme/\u0000evil", "claims": [{"benchmark": "gsm8k", "score": 50}]}, 400, "control characters"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("payload, status, message", MALFORMED)
def test_malformed_submission_is_a_clear_4xx(client, token, card_repo, payload, status, message):
    response = post(client, payload)
    assert response.status_code == status, response.content
    assert message in str(response.json())
    assert not ModelSubmission.objects.exists() and not Claim.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url, status", [
    ("/api/submissions/99999999999999999999999", 422),
    ("/api/submissions/0", 422),
    ("/api/flags?repo_id=acme/%00x", 422),
    ("/api/flags?limit=" + "9" * 400, 422),
    ("/api/models/acme/%00x", 404),
    ("/api/models/acme/%00x/eval_results.yaml", 404),
    ("/api/leaderboard?page=" + "9" * 30, 400),
    ("/api/leaderboard?q=%00", 400),
    ("/models/acme/%00x/", 404),
    ("/models/acme/x/samples?submission=99999999999999999999&benchmark=gsm8k", 400),
])
def test_malformed_reads_are_a_4xx(client, url, status):
    cache.clear()
    assert client.get(url).status_code == status


@pytest.mark.django_db(transaction=True)
def test_schemathesis_fuzz_finds_no_server_error(token, card_repo):
    """Every operation of the published schema, positive and negative cases, through the real
    WSGI application (its own database transactions: one failing request cannot hide another)."""
    import schemathesis
    from django.core.wsgi import get_wsgi_application
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())
    headers = {"Authorization": f"Bearer {KEY}"}
    tried: list[int] = []
    server_errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                                 suppress_health_check=list(HealthCheck))
            def fuzz(case):
                response = case.call(headers=headers)
                tried.append(response.status_code)
                if response.status_code >= 500:
                    server_errors.append(f"{operation.label} -> {response.status_code}: {case.as_curl_command()}")

            try:
                fuzz()
            except Unsatisfiable:  # nothing to make invalid in this operation (e.g. no parameters)
                pass
    statuses = sorted(set(tried))
    print(f"schemathesis: {len(tried)} requests over {len(list(schema.get_all_operations()))} operations, "
          f"statuses {statuses}, {len(server_errors)} server errors")
    assert len(tried) >= 200
    assert server_errors == [], "\n".join(server_errors[:20])
