"""Sign in with Hugging Face: the OAuth 2.0 authorization-code flow (with PKCE) against the Hub's
OpenID Connect endpoints (https://huggingface.co/docs/hub/oauth).

Only active when settings.HF_OAUTH_CLIENT_ID and HF_OAUTH_CLIENT_SECRET are set. The `state`
parameter is a random value bound to the browser's session and checked on the way back, so a
callback the user did not start (login CSRF) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET

from leaderboard.models import HubIdentity
from leaderboard.services import quotas

log = logging.getLogger(__name__)

# Local usernames with this prefix belong to Hub accounts only (sign-up refuses it).
HF_USERNAME_PREFIX = "hf_"
SESSION_STATE = "hf_oauth_state"
SESSION_VERIFIER = "hf_oauth_verifier"
# "profile" brings the username and the organisations (`orgs`, with the user's role in each) that
# an author submission's ownership check reads.
SCOPES = "openid profile"
TIMEOUT_S = 10


def enabled() -> bool:
    return bool(settings.HF_OAUTH_CLIENT_ID and settings.HF_OAUTH_CLIENT_SECRET)


def hub_url(path: str) -> str:
    base = settings.HF_OAUTH_BASE_URL or "https://huggingface.co"
    return base.rstrip("/") + path


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _redirect_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("hf_callback"))


@require_GET
def hf_login(request: HttpRequest) -> HttpResponse:
    if not enabled():
        return HttpResponse("Hugging Face sign-in is not configured on this site.", status=404, content_type="text/plain")
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    request.session[SESSION_STATE] = state
    request.session[SESSION_VERIFIER] = verifier
    query = urlencode(
        {
            "client_id": settings.HF_OAUTH_CLIENT_ID,
            "redirect_uri": _redirect_uri(request),
            "response_type": "code",
            "scope": SCOPES,
            "state": state,
            "code_challenge": _pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return redirect(f"{hub_url('/oauth/authorize')}?{query}")


def _refuse(message: str) -> HttpResponse:
    return HttpResponseBadRequest(message, content_type="text/plain")


@require_GET
def hf_callback(request: HttpRequest) -> HttpResponse:
    if not enabled():
        return HttpResponse("Hugging Face sign-in is not configured on this site.", status=404, content_type="text/plain")
    expected = request.session.pop(SESSION_STATE, None)
    verifier = request.session.pop(SESSION_VERIFIER, None)
    state = request.GET.get("state", "")
    if not expected or not secrets.compare_digest(state, expected):
        return _refuse("Sign-in refused: the state does not match the one this browser started. Start again.")
    if request.GET.get("error"):
        return _refuse(f"Hugging Face refused the sign-in: {request.GET.get('error_description') or request.GET['error']}")
    code = request.GET.get("code", "")
    if not code:
        return _refuse("Sign-in refused: no authorization code in the callback.")
    if quotas.throttled(request, "login", settings.LOGIN_RATE):
        return HttpResponse("Too many sign-in attempts from here; wait a while and try again.", status=429,
                            content_type="text/plain")
    try:
        profile = _exchange_and_fetch_profile(request, code, verifier or "")
    except OAuthError as exc:
        return _refuse(f"Sign-in with Hugging Face failed: {exc}")
    user = _user_for_profile(profile)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect(settings.LOGIN_REDIRECT_URL)


class OAuthError(RuntimeError):
    pass


def _exchange_and_fetch_profile(request: HttpRequest, code: str, verifier: str) -> dict:
    try:
        token_response = requests.post(
            hub_url("/oauth/token"),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": _redirect_uri(request),
                "client_id": settings.HF_OAUTH_CLIENT_ID,
                "code_verifier": verifier,
            },
            auth=(settings.HF_OAUTH_CLIENT_ID, settings.HF_OAUTH_CLIENT_SECRET),
            timeout=TIMEOUT_S,
        )
        if token_response.status_code != 200:
            raise OAuthError(f"token exchange answered HTTP {token_response.status_code}")
        access_token = token_response.json().get("access_token")
        if not access_token:
            raise OAuthError("token exchange returned no access token")
        info = requests.get(
            hub_url("/oauth/userinfo"), headers={"Authorization": f"Bearer {access_token}"}, timeout=TIMEOUT_S
        )
        if info.status_code != 200:
            raise OAuthError(f"userinfo answered HTTP {info.status_code}")
        profile = info.json()
    except (requests.RequestException, ValueError) as exc:
        raise OAuthError(f"cannot reach Hugging Face ({type(exc).__name__})") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("sub"), str) or not profile["sub"].strip():
        raise OAuthError("the profile has no user id")
    if not isinstance(profile.get("preferred_username"), str) or not profile["preferred_username"].strip():
        raise OAuthError("the profile has no username")
    return profile


def _orgs_of(profile: dict) -> list[dict[str, str]]:
    """The userinfo's organisations as [{name, role}] (role "" when the Hub does not say)."""
    orgs = profile.get("orgs")
    if not isinstance(orgs, list):
        return []
    found = []
    for org in orgs:
        if isinstance(org, dict) and isinstance(org.get("preferred_username"), str):
            role = org.get("roleInOrg")
            found.append({"name": org["preferred_username"][:96], "role": role if isinstance(role, str) else ""})
    return found


def _free_username(preferred: str) -> str:
    """A local username for a new Hub account: "hf_<name>", with a number added when an earlier
    account (a renamed one, keyed on its own `sub`) holds it. Local sign-up cannot take the hf_
    prefix, so only Hub accounts ever hold these names."""
    User = get_user_model()
    base = f"{HF_USERNAME_PREFIX}{preferred}"[:140]
    candidate, n = base, 1
    while User.objects.filter(username=candidate).exists():
        n += 1
        candidate = f"{base}_{n}"
    return candidate


@transaction.atomic
def _user_for_profile(profile: dict):
    """The local account of a Hub account, found by the Hub's stable subject id (`sub`), never by
    username: Hub usernames can change hands, and a local account named like one proves
    nothing. A first sign-in creates the account; every sign-in refreshes the username and
    organisations the ownership check reads."""
    sub = profile["sub"].strip()[:255]
    identity = HubIdentity.objects.select_for_update().select_related("user").filter(sub=sub).first()
    if identity is None:
        User = get_user_model()
        user = User(username=_free_username(profile["preferred_username"].strip()),
                    first_name=str(profile.get("name") or "")[:150])
        user.set_unusable_password()
        user.save()
        identity = HubIdentity(user=user, sub=sub)
    identity.username = profile["preferred_username"].strip()[:96]
    identity.orgs = _orgs_of(profile)
    identity.save()
    return identity.user
