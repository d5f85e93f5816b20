"""Watching a model, through the real pages: a signed-in user's POST toggle (CSRF-checked) on the
model page, the "watched models" list, and the rules the database holds (one watch per user and
model, repo ids in the Hub's shape)."""

from __future__ import annotations

import re

import pytest
from django.db import IntegrityError, transaction
from django.test import Client

from leaderboard.models import ModelSubmission, Watch
from leaderboard.services.watch import WatchError, do_toggle_watch, watcher_addresses
from tests.browser.site_data import flag, publish
from tests.leaderboard.test_triage_fixtures import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def model():
    return publish("acme/watched", {"gsm8k": (7, 10)})


@pytest.fixture
def reader():
    client = Client()
    client.user = make_user("reader")
    client.force_login(client.user)
    return client


def test_a_signed_in_user_watches_and_unwatches_from_the_model_page(model, reader):
    page = reader.get("/models/acme/watched/").content.decode()
    assert 'id="watch-toggle"' in page and "Watch this model" in page
    response = reader.post("/models/acme/watched/watch")
    assert response.status_code == 302 and response["Location"] == "/models/acme/watched/"
    assert list(Watch.objects.values_list("user__username", "repo_id")) == [("reader", "acme/watched")]
    page = reader.get("/models/acme/watched/").content.decode()
    assert "Stop watching" in page and 'aria-pressed="true"' in page
    reader.post("/models/acme/watched/watch")
    assert not Watch.objects.exists()
    assert "Watch this model" in reader.get("/models/acme/watched/").content.decode()


def test_anonymous_readers_are_sent_to_log_in(model):
    page = Client().get("/models/acme/watched/").content.decode()
    assert 'id="watch-login"' in page and 'id="watch-toggle"' not in page
    response = Client().post("/models/acme/watched/watch")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert Client().get("/me/watched/").status_code == 302
    assert not Watch.objects.exists()


def test_the_toggle_needs_post_and_a_csrf_token(model):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("strict"))
    assert strict.get("/models/acme/watched/watch").status_code == 405
    assert strict.post("/models/acme/watched/watch").status_code == 403  # no token: refused
    assert not Watch.objects.exists()
    page = strict.get("/models/acme/watched/").content.decode()
    form = re.search(r'<form method="post" action="/models/acme/watched/watch".*?</form>', page, re.S).group(0)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    assert strict.post("/models/acme/watched/watch", {"csrfmiddlewaretoken": token}).status_code == 302
    assert Watch.objects.filter(user__username="strict", repo_id="acme/watched").exists()


def test_only_a_model_on_verity_can_be_watched(reader):
    assert reader.post("/models/nobody/nothing/watch").status_code == 404
    assert reader.post("/models/acme/bad..name/watch").status_code == 404
    assert not Watch.objects.exists()
    with pytest.raises(WatchError):
        do_toggle_watch(reader.user, "not a repo")


def test_the_watched_list_shows_ones_own_models_with_their_badge(model, reader):
    flagged = publish("acme/flagged", {"gsm8k": (3, 10)}, status=ModelSubmission.Status.FLAGGED)
    flag(flagged)
    reader.post("/models/acme/watched/watch")
    reader.post("/models/acme/flagged/watch")
    other = Client()
    other.force_login(make_user("other"))
    assert 'id="no-watched"' in other.get("/me/watched/").content.decode()
    page = reader.get("/me/watched/").content.decode()
    rows = re.findall(r'<tr data-repo="([^"]+)">.*?class="badge badge-(\w+)"', page, re.S)
    assert rows == [("acme/flagged", "flagged"), ("acme/watched", "verified")]
    assert 'action="/models/acme/flagged/watch"' in page  # stop watching from the list


def test_the_database_holds_one_watch_per_user_and_model(model, reader):
    Watch.objects.create(user=reader.user, repo_id="acme/watched")
    with pytest.raises(IntegrityError), transaction.atomic():
        Watch.objects.create(user=reader.user, repo_id="acme/watched")
    for bad in ("no-slash", "a/b/c", "acme/x--y", "acme/../etc"):
        with pytest.raises(IntegrityError), transaction.atomic():
            Watch.objects.create(user=reader.user, repo_id=bad)


def test_watcher_addresses_are_each_active_watcher_once_less_the_excluded(model):
    for name in ("w1", "w2", "gone", "nomail"):
        user = make_user(name)
        Watch.objects.create(user=user, repo_id="acme/watched")
    make_user("unrelated")
    type(Watch.objects.get(user__username="gone").user).objects.filter(username="gone").update(is_active=False)
    type(Watch.objects.get(user__username="nomail").user).objects.filter(username="nomail").update(email="")
    assert watcher_addresses("acme/watched") == ["w1@example.org", "w2@example.org"]
    assert watcher_addresses("acme/watched", exclude=("W1@example.org",)) == ["w2@example.org"]
    assert watcher_addresses("acme/other") == []
