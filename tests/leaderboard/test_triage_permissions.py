"""Who may do what, on every triage URL and API endpoint: anonymous, an author on their own
flag, an author on another's flag, a maintainer. Refusals are 403 and change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from leaderboard.models import Flag, FlagEvent
from leaderboard.triage import ACTIONS
from tests.leaderboard.test_triage_fixtures import people, scenario  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "author_own", "author_other", "maintainer")
# Form parameters that make each action meaningful for a maintainer.
ACTION_PARAMS: dict[str, dict[str, str]] = {
    "take": {},
    "assign": {"assignee": "milo"},
    "confirm": {"reason": "clear mismatch"},
    "dismiss": {"reason": "harness difference"},
    "resolve": {"reason": "author corrected the claim"},
    "reopen": {"reason": "again"},
    "rerun": {"reason": "rule out a flaky worker"},
    "note": {"message": "looking"},
    "correct-claim": {"shots": "8", "cot": "true", "chat_template": "false", "reason": "as on the card"},
}


def _client_and_flag(role: str, scenario: dict[str, Any], client: Client) -> tuple[Client, Flag]:
    """The client logged in as `role`, and the flag that role is tested on."""
    if role == "anonymous":
        return client, scenario["flag"]
    if role == "author_own":
        client.force_login(scenario["author"])
        return client, scenario["flag"]
    if role == "author_other":
        client.force_login(scenario["author"])  # alice, on oscar's flag
        return client, scenario["other_flag"]
    client.force_login(scenario["maintainer"])
    return client, scenario["flag"]


def _snapshot(flag: Flag) -> tuple:
    flag.refresh_from_db()
    return (flag.status, flag.assignee_id, flag.decision_reason, flag.severity,
            FlagEvent.objects.filter(flag=flag).count(), flag.submission.status)


def _assert_refused(response, flag: Flag, before: tuple) -> None:
    assert response.status_code == 403, (response.status_code, response.content[:300])
    assert _snapshot(flag) == before


def test_triage_actions_are_all_covered():
    assert set(ACTION_PARAMS) == set(ACTIONS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", ["queue", "flag"])
def test_triage_pages(role, page, scenario, client):
    client, flag = _client_and_flag(role, scenario, client)
    url = reverse("triage:queue") if page == "queue" else reverse("triage:flag", args=[flag.pk])
    before = _snapshot(flag)
    response = client.get(url)
    if role == "maintainer":
        assert response.status_code == 200
        assert scenario["flag"].summary in response.content.decode()
    else:
        _assert_refused(response, flag, before)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTION_PARAMS))
def test_triage_actions(role, action, scenario, client):
    client, flag = _client_and_flag(role, scenario, client)
    before = _snapshot(flag)
    response = client.post(reverse("triage:action", args=[flag.pk, action]), ACTION_PARAMS[action])
    if role != "maintainer":
        _assert_refused(response, flag, before)
        return
    if action == "reopen":  # an open flag cannot be reopened: allowed to ask, refused by the state machine
        assert response.status_code == 409
        assert _snapshot(flag) == before
        return
    assert response.status_code == 302, response.content[:500]
    assert _snapshot(flag) != before  # the action wrote something (an event at least)


@pytest.mark.parametrize("role", ROLES)
def test_flag_reply(role, scenario, client):
    client, flag = _client_and_flag(role, scenario, client)
    url = reverse("flag_reply", args=[flag.pk])
    before = _snapshot(flag)
    page = client.get(url)
    response = client.post(url, {"message": f"reply from {role}"})
    if role in ("anonymous", "author_other"):
        assert page.status_code == 403
        _assert_refused(response, flag, before)
        return
    assert page.status_code == 200 and flag.summary in page.content.decode()
    assert response.status_code == 302
    reply = FlagEvent.objects.filter(flag=flag, action="reply").get()
    assert reply.message == f"reply from {role}"
    assert reply.data["role"] == ("author" if role == "author_own" else "maintainer")


# --- API --------------------------------------------------------------------------------------

API = "/api/triage"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ["list", "detail", "act"])
def test_triage_api(role, endpoint, scenario, client):
    client, flag = _client_and_flag(role, scenario, client)
    before = _snapshot(flag)
    if endpoint == "list":
        response = client.get(f"{API}/flags", {"sort": "oldest"})
    elif endpoint == "detail":
        response = client.get(f"{API}/flags/{flag.pk}")
    else:
        response = client.post(f"{API}/flags/{flag.pk}/actions", json.dumps({"action": "confirm", "reason": "api"}),
                               content_type="application/json")
    if role != "maintainer":
        _assert_refused(response, flag, before)
        return
    assert response.status_code == 200, response.content[:500]
    body = response.json()
    if endpoint == "list":
        assert body["count"] == 2 and body["counts_by_kind"]["score_mismatch"] == 1
        assert {item["id"] for item in body["flags"]} == {scenario["flag"].pk, scenario["other_flag"].pk}
    elif endpoint == "detail":
        assert body["flag"]["id"] == flag.pk and body["evidence"]["claimed"] == 70.0
        assert [event["action"] for event in body["events"]] == ["raised"]
    else:
        assert body["flag"]["status"] == "confirmed"
        assert [(e["action"], e["actor"]) for e in body["events"]] == [("raised", None), ("confirmed", "mara")]


def test_triage_api_errors_and_csrf(scenario):
    flag = scenario["flag"]
    client = Client()
    client.force_login(scenario["maintainer"])
    post = lambda body: client.post(f"{API}/flags/{flag.pk}/actions", json.dumps(body),  # noqa: E731
                                    content_type="application/json")
    assert post({"action": "dismiss"}).status_code == 400  # no reason
    assert post({"action": "reopen"}).status_code == 409  # illegal from open
    assert post({"action": "self-destruct"}).status_code == 422
    assert post({"action": "assign", "assignee": "alice"}).json()["detail"].endswith("assigned to maintainers.")
    assert client.get(f"{API}/flags", {"kind": "nope"}).status_code == 400
    assert client.get(f"{API}/flags/999999").status_code == 404
    response = post({"action": "correct-claim", "shots": 8, "cot": True, "chat_template": False, "reason": "card"})
    assert response.status_code == 200 and response.json()["events"][-1]["action"] == "claim_corrected"
    # Session auth means CSRF: a maintainer's browser tricked into posting cross-site is refused.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(scenario["maintainer"])
    response = strict.post(f"{API}/flags/{flag.pk}/actions", json.dumps({"action": "confirm"}),
                           content_type="application/json")
    assert response.status_code == 403
    flag.refresh_from_db()
    assert flag.status == Flag.Status.OPEN
