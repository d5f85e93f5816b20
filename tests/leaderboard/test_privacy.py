"""Privacy, through the real pages and API: maintainers' internal notes never reach authors;
endpoint URLs are checked at submission (credentials refused in the URL, accepted only in the
secret field, which no page, API answer, claims.json or export ever shows); public error text
carries no internal paths."""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import re

import pytest
from django.apps import apps
from django.core.cache import cache
from django.test import Client

from leaderboard.models import ApiToken, EvaluationRun, ModelSubmission
from leaderboard.services import triage as triage_service
from leaderboard.services.ownership import owner_token_for
from tests.browser.site_data import flag, install_card_repo, measure
from tests.leaderboard.test_triage_fixtures import make_user

pytestmark = pytest.mark.django_db

REPO = "acme/private-model"
KEY = "vty_privacy-key-0123456789abcdefghijklmnopqrs"
SECRET = "sk-canary-7f3a9c"


@pytest.fixture
def author(client):
    user = make_user("author")
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def repo(hf_cache, tmp_path, author) -> str:
    return install_card_repo(hf_cache, tmp_path, REPO, owner_token=owner_token_for(author.user))


def form(**overrides) -> dict:
    data = {"repo_id": REPO, "revision": "main", "training": "full", "score_gsm8k": "71.5"}
    data.update(overrides)
    return data


def test_maintainers_notes_never_reach_the_author(author):
    maintainer = make_user("milo", maintainer=True)
    submission = ModelSubmission.objects.create(repo_id=REPO, submitter=author.user, status="flagged")
    raised = flag(submission)
    triage_service.do_note(raised, maintainer, "INTERNAL: probably the lab we banned last year")
    triage_service.do_reply(raised, maintainer, "Could you share your eval harness?")
    reply_page = author.get(f"/flags/{raised.pk}/reply").content.decode()
    assert "Could you share your eval harness?" in reply_page
    assert "INTERNAL" not in reply_page and 'data-action="note"' not in reply_page
    assert author.get(f"/api/triage/flags/{raised.pk}").status_code in (401, 403)
    assert "INTERNAL" not in Client().get(f"/api/flags?repo_id={REPO}").content.decode()
    staff = Client()
    staff.force_login(maintainer)
    assert "INTERNAL" in staff.get(f"/triage/flags/{raised.pk}/").content.decode()
    assert "INTERNAL" in staff.get(f"/flags/{raised.pk}/reply").content.decode()
    events = staff.get(f"/api/triage/flags/{raised.pk}").json()["events"]
    assert [e["action"] for e in events] == ["note", "reply"]


@pytest.mark.parametrize("url", [f"https://user:{SECRET}@api.example.org/v1", f"https://{SECRET}@api.example.org/v1"])
def test_an_endpoint_url_with_credentials_is_refused_at_submission(author, repo, url):
    response = author.post("/submit/", form(endpoint=url))
    html = response.content.decode()
    assert response.status_code == 400 and "must not contain credentials" in html
    assert SECRET not in html  # the message does not repeat it, and the input is not echoed back
    token = ApiToken.objects.create(user=author.user, prefix=KEY[:12], key_hash=hashlib.sha256(KEY.encode()).hexdigest())
    api = Client().post("/api/submissions", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {KEY}",
                        data={"repo_id": REPO, "endpoint": url, "claims": [{"benchmark": "gsm8k", "score": 70}]})
    assert api.status_code == 400 and "must not contain credentials" in api.json()["detail"]
    assert SECRET not in api.content.decode()
    assert not ModelSubmission.objects.exists() and token.user == author.user


def test_internal_endpoint_hosts_are_refused_at_submission(author, repo):
    for url in ("http://169.254.169.254/v1", "http://metadata.google.internal/v1", "http://10.0.0.5:8000/v1"):
        response = author.post("/submit/", form(endpoint=url))
        assert response.status_code == 400, url
    assert not ModelSubmission.objects.exists()


def test_the_endpoint_key_is_kept_apart_and_never_shown(author, repo):
    bad = author.post("/submit/", form(endpoint="https://api.example.org/v1", endpoint_api_key=SECRET, score_gsm8k="500"))
    assert bad.status_code == 400 and SECRET not in bad.content.decode()  # not rendered back into the form
    response = author.post("/submit/", form(endpoint="https://API.example.org/v1/", endpoint_model="m-1",
                                            endpoint_api_key=SECRET))
    assert response.status_code == 302
    submission = ModelSubmission.objects.get()
    assert submission.endpoint_url == "https://api.example.org/v1" and submission.endpoint_api_key == SECRET
    measure(submission, {"gsm8k": (7, 10)})
    cache.clear()
    public = Client()
    pages = [
        public.get(f"/models/{REPO}/").content.decode(),
        public.get(f"/submissions/{submission.pk}/").content.decode(),
        public.get(f"/api/models/{REPO}").content.decode(),
        public.get(f"/api/submissions/{submission.pk}").content.decode(),
        public.get("/api/leaderboard.csv").content.decode(),
        public.get(f"/api/models/{REPO}/eval_results.yaml").content.decode(),
        author.get("/me/submissions/").content.decode(),
    ]
    claims_json = re.search(r'id="claims-json">(.*?)</pre>', pages[0], re.S).group(1)
    assert "https://api.example.org/v1" in claims_json
    for text in pages:
        assert SECRET not in text
    assert next(csv.reader(io.StringIO(pages[4])))[0] == "rank"


def test_stored_credentials_are_moved_out_of_endpoint_urls_by_the_migration():
    stored = ModelSubmission.objects.create(repo_id=REPO, endpoint_url=f"https://user:{SECRET}@api.example.org/v1")
    clean = ModelSubmission.objects.create(repo_id="acme/clean", endpoint_url="https://api.example.org/v1")
    migration = importlib.import_module("leaderboard.migrations.0004_ownership_quotas_and_hub_identity")
    migration.move_endpoint_credentials(apps, None)
    stored.refresh_from_db()
    clean.refresh_from_db()
    assert (stored.endpoint_url, stored.endpoint_api_key) == ("https://api.example.org/v1", SECRET)
    assert (clean.endpoint_url, clean.endpoint_api_key) == ("https://api.example.org/v1", "")


def test_public_error_messages_carry_no_internal_paths(author, hf_cache):
    submission = ModelSubmission.objects.create(
        repo_id=REPO, submitter=author.user, status="failed",
        rejection_reason="intake failed reading /var/lib/verity/model_cache/acme/config.json")
    EvaluationRun.objects.create(
        submission=submission, model_repo=REPO, status="failed",
        error='Traceback: File "/app/verification/runner.py", line 12: OSError at /tmp/worker-7/hf-cache/blob',
        log=[{"at": "t0", "step": "downloading into /var/cache/huggingface/models--acme"}],
    )
    public = Client()
    texts = [public.get(f"/submissions/{submission.pk}/").content.decode(),
             public.get(f"/submissions/{submission.pk}/progress").content.decode(),
             public.get(f"/api/submissions/{submission.pk}").content.decode()]
    for text in texts:
        assert "/var/lib/verity" not in text and "/app/verification" not in text and "/tmp/worker-7" not in text
        assert "[path]" in text
    assert "/var/cache/huggingface" not in texts[0]
    missing = author.post("/submit/", form(repo_id="acme/not-in-cache"))
    assert missing.status_code == 400 and "not in the local Hugging Face cache" in missing.content.decode()
    assert str(hf_cache) not in missing.content.decode()
