"""Sign in with Hugging Face: the redirect, the state check, and the whole authorization-code
exchange against a real HTTP server on 127.0.0.1 standing in for huggingface.co's endpoints."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from leaderboard.models import HubIdentity

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests that create users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

OAUTH = {"HF_OAUTH_CLIENT_ID": "client-123", "HF_OAUTH_CLIENT_SECRET": "secret-456"}


DEFAULT_PROFILE = {"sub": "6789", "preferred_username": "jane", "name": "Jane Doe"}


class FakeHubOAuth(BaseHTTPRequestHandler):
    """Token and userinfo endpoints with the Hub's request/response shapes; records requests.
    `profile` is what userinfo answers (tests set the account's sub, username and orgs)."""

    seen: list[dict] = []
    profile: dict = DEFAULT_PROFILE

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        FakeHubOAuth.seen.append({"path": self.path, "form": form, "auth": self.headers.get("Authorization")})
        if self.path == "/oauth/token" and form.get("code") == ["good-code"]:
            self._json(200, {"access_token": "hf_access", "token_type": "bearer"})
        else:
            self._json(400, {"error": "invalid_grant"})

    def do_GET(self) -> None:
        if self.path == "/oauth/userinfo" and self.headers.get("Authorization") == "Bearer hf_access":
            self._json(200, FakeHubOAuth.profile)
        else:
            self._json(401, {"error": "invalid_token"})


@pytest.fixture
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHubOAuth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeHubOAuth.seen = []
    FakeHubOAuth.profile = DEFAULT_PROFILE
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hf_login_hidden_and_404_when_not_configured(client):
    assert "hf-login" not in client.get("/accounts/login/").content.decode()
    assert client.get("/accounts/hf/login/").status_code == 404


@override_settings(**OAUTH)
def test_hf_login_redirects_to_the_hub_with_state_and_pkce(client):
    assert 'id="hf-login"' in client.get("/accounts/login/").content.decode()
    response = client.get("/accounts/hf/login/")
    target = urlparse(response["Location"])
    query = parse_qs(target.query)
    assert response.status_code == 302
    assert f"{target.scheme}://{target.netloc}{target.path}" == "https://huggingface.co/oauth/authorize"
    assert query["client_id"] == ["client-123"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://testserver/accounts/hf/callback/"]
    assert query["state"] == [client.session["hf_oauth_state"]] and len(query["state"][0]) >= 32
    assert query["code_challenge_method"] == ["S256"]


@override_settings(**OAUTH)
@pytest.mark.parametrize("state", ["", "forged-state"])
def test_callback_with_wrong_state_is_refused(client, state):
    client.get("/accounts/hf/login/")
    response = client.get(f"/accounts/hf/callback/?code=good-code&state={state}")
    assert response.status_code == 400 and "state does not match" in response.content.decode()
    assert not get_user_model().objects.exists()


@override_settings(**OAUTH)
def test_callback_without_a_started_login_is_refused(client):
    response = client.get("/accounts/hf/callback/?code=good-code&state=anything")
    assert response.status_code == 400
    assert not get_user_model().objects.exists()


def test_full_code_exchange_signs_the_user_in(client, fake_hub):
    with override_settings(**OAUTH, HF_OAUTH_BASE_URL=fake_hub):
        state = parse_qs(urlparse(client.get("/accounts/hf/login/")["Location"]).query)["state"][0]
        response = client.get(f"/accounts/hf/callback/?code=good-code&state={state}")
    assert response.status_code == 302
    user = get_user_model().objects.get()
    assert user.username == "hf_jane" and not user.has_usable_password()
    assert client.get("/submit/").status_code == 200  # signed in
    token_request = FakeHubOAuth.seen[0]
    assert token_request["form"]["grant_type"] == ["authorization_code"]
    assert token_request["form"]["code_verifier"][0] and token_request["auth"].startswith("Basic ")
    # the state is single-use: replaying the callback is refused
    with override_settings(**OAUTH, HF_OAUTH_BASE_URL=fake_hub):
        assert client.get(f"/accounts/hf/callback/?code=good-code&state={state}").status_code == 400


def test_refused_code_exchange_creates_no_user(client, fake_hub):
    with override_settings(**OAUTH, HF_OAUTH_BASE_URL=fake_hub):
        state = parse_qs(urlparse(client.get("/accounts/hf/login/")["Location"]).query)["state"][0]
        response = client.get(f"/accounts/hf/callback/?code=bad-code&state={state}")
    assert response.status_code == 400 and "token exchange answered HTTP 400" in response.content.decode()
    assert not get_user_model().objects.exists()


def sign_in_with_hub(client, fake_hub: str, profile: dict):
    """The whole authorization-code flow against the fake Hub answering `profile`; returns the
    callback's response."""
    FakeHubOAuth.profile = profile
    with override_settings(**OAUTH, HF_OAUTH_BASE_URL=fake_hub):
        state = parse_qs(urlparse(client.get("/accounts/hf/login/")["Location"]).query)["state"][0]
        return client.get(f"/accounts/hf/callback/?code=good-code&state={state}")


def test_takeover_by_registering_the_hf_name_first_no_longer_works(client, fake_hub):
    """The recipe: register hf_victim locally before the victim ever signs in with Hugging Face,
    then wait for the victim's sign-in to land in that account."""
    signup = client.post("/accounts/signup/", {"username": "hf_victim", "password1": "a-Long-pass-9876",
                                               "password2": "a-Long-pass-9876"})
    assert signup.status_code == 400 and "reserved for accounts that sign in with Hugging Face" in signup.content.decode()
    assert client.post("/accounts/signup/", {"username": "HF_Victim", "password1": "a-Long-pass-9876",
                                             "password2": "a-Long-pass-9876"}).status_code == 400
    assert not get_user_model().objects.exists()
    # An account that holds the name anyway (made before the rule, or by an admin) is never
    # handed to the Hub account: sign-ins are matched on the Hub's `sub`, not the username.
    squatter = get_user_model().objects.create_user("hf_victim", password="pw-Squat-123")
    victim = Client()
    response = sign_in_with_hub(victim, fake_hub, {"sub": "victim-sub-1", "preferred_username": "victim"})
    assert response.status_code == 302
    signed_in = get_user_model().objects.get(pk=int(victim.session["_auth_user_id"]))
    assert signed_in != squatter and signed_in.username == "hf_victim_2"
    assert signed_in.hub_identity.sub == "victim-sub-1" and signed_in.hub_identity.username == "victim"
    assert not HubIdentity.objects.filter(user=squatter).exists()


def test_a_renamed_hub_account_keeps_its_local_account_and_a_reused_name_gets_a_new_one(fake_hub):
    first = Client()
    sign_in_with_hub(first, fake_hub, {"sub": "sub-A", "preferred_username": "alice"})
    alice = get_user_model().objects.get(hub_identity__sub="sub-A")
    # alice renames herself on the Hub; her next sign-in lands in the same account
    sign_in_with_hub(Client(), fake_hub, {"sub": "sub-A", "preferred_username": "alice-new"})
    alice.refresh_from_db()
    assert alice.username == "hf_alice" and alice.hub_identity.username == "alice-new"
    # someone else now registers the freed name "alice" on the Hub: a different local account
    other = Client()
    sign_in_with_hub(other, fake_hub, {"sub": "sub-B", "preferred_username": "alice"})
    bob = get_user_model().objects.get(hub_identity__sub="sub-B")
    assert bob != alice and int(other.session["_auth_user_id"]) == bob.pk
    assert get_user_model().objects.count() == 2


def test_sign_in_stores_the_hub_organisations_and_roles(fake_hub):
    sign_in_with_hub(Client(), fake_hub, {
        "sub": "sub-C", "preferred_username": "carol",
        "orgs": [{"sub": "o1", "preferred_username": "bigorg", "roleInOrg": "write"},
                 {"sub": "o2", "preferred_username": "readers", "roleInOrg": "read"}, "garbage"],
    })
    identity = HubIdentity.objects.get(sub="sub-C")
    assert identity.orgs == [{"name": "bigorg", "role": "write"}, {"name": "readers", "role": "read"}]


def test_profile_without_a_subject_id_creates_no_user(client, fake_hub):
    response = sign_in_with_hub(client, fake_hub, {"preferred_username": "nosub"})
    assert response.status_code == 400 and "no user id" in response.content.decode()
    assert not get_user_model().objects.exists()
