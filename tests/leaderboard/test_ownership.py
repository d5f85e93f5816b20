"""Ownership, through the real web and API paths: an author submission needs proof of control of
the repo (the Hugging Face account of its namespace or of a writing member of its organisation,
signed in through the fake Hub; or the submitter's owner token committed to the repo at the pinned
sha, read from a real HF cache snapshot). Anyone may request a community verification instead: it
is stored with its kind, shown apart and labelled, never replaces the owner's leaderboard row or
claims, and the owner can always answer its flags."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.core.cache import cache
from django.test import Client

from leaderboard.models import ApiToken, Claim, FlagEvent, LeaderboardEntry, ModelSubmission
from leaderboard.services.ownership import OWNER_TOKEN_FILE, owner_token_for
from tests.browser.site_data import entry, flag, install_card_repo, measure, publish
from tests.leaderboard.test_views_oauth import fake_hub, sign_in_with_hub  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

KEY = "vty_owner-test-key-0123456789abcdefghijklmnopq"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def stranger(client, django_user_model):
    user = django_user_model.objects.create_user("stranger", password="pw-Stranger-123")
    client.force_login(user)
    client.user = user
    return client


def form(repo_id: str, **overrides) -> dict:
    data = {"repo_id": repo_id, "revision": "main", "training": "full", "score_gsm8k": "99"}
    data.update(overrides)
    return data


def api_post(client, user, payload):
    if not ApiToken.objects.filter(user=user).exists():
        ApiToken.objects.create(user=user, prefix=KEY[:12], key_hash=hashlib.sha256(KEY.encode()).hexdigest())
    return client.post("/api/submissions", data=payload, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {KEY}")


def errors_of(response) -> str:
    return " ".join(re.findall(r'class="error[^"]*"[^>]*>(.*?)</', response.content.decode(), re.S))


def test_a_strangers_author_submission_is_refused_on_the_form_and_the_api(stranger, hf_cache, tmp_path):
    install_card_repo(hf_cache, tmp_path, "bigorg/model")
    response = stranger.post("/submit/", form("bigorg/model"))
    assert response.status_code == 400
    message = errors_of(response)
    assert "You have not shown that you control bigorg/model" in message
    assert OWNER_TOKEN_FILE in message and "community verification" in message
    api = api_post(Client(), stranger.user, {"repo_id": "bigorg/model", "claims": [{"benchmark": "gsm8k", "score": 99}]})
    assert api.status_code == 400 and api.json()["field"] == "repo_id"
    assert "You have not shown that you control bigorg/model" in api.json()["detail"]
    assert not ModelSubmission.objects.exists() and not Claim.objects.exists()


def test_the_owner_token_committed_at_the_pinned_sha_proves_control(stranger, hf_cache, tmp_path, django_user_model):
    page = stranger.get("/accounts/owner-token/").content.decode()
    token = re.search(r'id="owner-token">([^<]+)<', page).group(1)
    assert token == owner_token_for(stranger.user) and OWNER_TOKEN_FILE in page
    old_sha = install_card_repo(hf_cache, tmp_path, "acme/owned", marker="before")  # no token yet
    other = django_user_model.objects.create_user("other", password="pw-Other-123")
    wrong_sha = install_card_repo(hf_cache, tmp_path, "acme/owned", marker="wrong", owner_token=owner_token_for(other))
    assert stranger.post("/submit/", form("acme/owned", revision=wrong_sha)).status_code == 400  # someone else's
    new_sha = install_card_repo(hf_cache, tmp_path, "acme/owned", marker="after", owner_token=token)
    # the token proves control at the commit that holds it, not at an earlier one
    refused = stranger.post("/submit/", form("acme/owned", revision=old_sha))
    assert refused.status_code == 400 and "have not shown that you control" in errors_of(refused)
    assert stranger.post("/submit/", form("acme/owned")).status_code == 302
    submission = ModelSubmission.objects.get()
    assert submission.pinned_sha == new_sha and submission.kind == "author"
    assert submission.owner_proof == {"method": "repo_token", "file": OWNER_TOKEN_FILE, "sha": new_sha}


def test_an_oversized_owner_token_file_is_not_read(stranger, hf_cache, tmp_path):
    padded = owner_token_for(stranger.user) + "\n" + "x" * 4096
    install_card_repo(hf_cache, tmp_path, "acme/padded", extra={OWNER_TOKEN_FILE: padded})
    assert stranger.post("/submit/", form("acme/padded")).status_code == 400


def test_the_hub_account_of_the_namespace_or_a_writing_member_of_its_org_proves_control(fake_hub, hf_cache, tmp_path):
    client = Client()
    sign_in_with_hub(client, fake_hub, {
        "sub": "carol-sub", "preferred_username": "carol",
        "orgs": [{"sub": "o1", "preferred_username": "BigOrg", "roleInOrg": "write"},
                 {"sub": "o2", "preferred_username": "readers", "roleInOrg": "read"}],
    })
    for repo_id in ("carol/own-model", "bigorg/team-model", "readers/model", "otherorg/model"):
        install_card_repo(hf_cache, tmp_path, repo_id)
    assert client.post("/submit/", form("carol/own-model")).status_code == 302
    assert client.post("/submit/", form("bigorg/team-model")).status_code == 302
    for refused in ("readers/model", "otherorg/model"):  # a read-only member; not a member at all
        response = client.post("/submit/", form(refused))
        assert response.status_code == 400 and "have not shown that you control" in errors_of(response)
    proofs = {s.repo_id: s.owner_proof for s in ModelSubmission.objects.all()}
    assert proofs == {
        "carol/own-model": {"method": "hf_account", "namespace": "carol", "hub_username": "carol"},
        "bigorg/team-model": {"method": "hf_account", "namespace": "bigorg", "hub_username": "carol"},
    }


def test_a_community_verification_is_shown_apart_and_leaves_the_owners_row_untouched(stranger, hf_cache, tmp_path,
                                                                                     django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw-Owner-123")
    owners = publish("bigorg/model", {"gsm8k": (7, 10)}, claims={"gsm8k": 70.0}, user=owner)
    install_card_repo(hf_cache, tmp_path, "bigorg/model")
    assert stranger.post("/submit/", form("bigorg/model", kind="community")).status_code == 302
    community = ModelSubmission.objects.get(kind="community")
    assert community.submitter == stranger.user and community.owner_proof == {}
    api = api_post(Client(), stranger.user, {"repo_id": "bigorg/model", "kind": "community", "revision": "main",
                                             "claims": [{"benchmark": "gsm8k", "score": 99}]})
    assert api.status_code == 400 and "already waiting" in api.json()["detail"]  # same sha, same kind
    # the pipeline measures the community verification (newer than the owner's) and publishes it
    measure(community, {"gsm8k": (2, 10)}, verdicts={"gsm8k": "inconsistent"})
    row = entry("bigorg/model")
    assert row.submission_id == owners.pk and row.claimed == {"gsm8k": 70.0} and row.scores == {"gsm8k": 70.0}
    assert LeaderboardEntry.objects.count() == 1
    cache.clear()
    board = Client().get("/api/leaderboard").json()["results"]
    assert [(r["repo_id"], r["submission_id"]) for r in board] == [("bigorg/model", owners.pk)]
    detail = Client().get("/api/models/bigorg/model").json()
    assert detail["submission"]["id"] == owners.pk and detail["submission"]["kind"] == "author"
    page = Client().get("/models/bigorg/model/").content.decode()
    assert 'id="community-label"' not in page and "70.0" in page
    assert 'id="history-body"' in page  # the History fold, read when it opens
    history = Client().get("/models/bigorg/model/history", HTTP_HX_REQUEST="true").content.decode()
    rows = re.search(r'id="community-verifications".*?</table>', history, re.S).group(0)
    assert f"#{community.pk}" in rows and "stranger" in rows
    shown = Client().get(f"/models/bigorg/model/?submission={community.pk}").content.decode()
    assert 'id="community-label"' in shown and "requested by\n  stranger" in shown
    status = Client().get(f"/submissions/{community.pk}/").content.decode()
    assert 'id="kind-label">Community verification' in status


def test_the_owner_can_always_answer_a_community_verifications_flags(stranger, fake_hub, django_user_model):
    community = publish("bigorg/flagged", {"gsm8k": (2, 10)}, claims={"gsm8k": 99.0}, user=stranger.user,
                        kind=ModelSubmission.Kind.COMMUNITY)
    raised = flag(community)
    owner = Client()
    sign_in_with_hub(owner, fake_hub, {"sub": "owner-sub", "preferred_username": "olga",
                                       "orgs": [{"sub": "o1", "preferred_username": "bigorg", "roleInOrg": "admin"}]})
    page = owner.get(f"/models/bigorg/flagged/?submission={community.pk}").content.decode()
    assert "flag-reply" in page
    assert owner.post(f"/flags/{raised.pk}/reply", {"message": "Our own run gets 71 under 8-shot."}).status_code == 302
    assert stranger.post(f"/flags/{raised.pk}/reply", {"message": "Mine gets 20."}).status_code == 302
    bystander = Client()
    bystander.force_login(django_user_model.objects.create_user("bystander", password="pw-By-12345"))
    assert bystander.post(f"/flags/{raised.pk}/reply", {"message": "me too"}).status_code == 403
    assert "flag-reply" not in bystander.get(f"/models/bigorg/flagged/?submission={community.pk}").content.decode()
    replies = FlagEvent.objects.filter(flag=raised, action="reply").order_by("id")
    assert [(e.actor.username, e.data["role"]) for e in replies] == [("hf_olga", "owner"), ("stranger", "author")]
