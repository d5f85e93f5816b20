"""Triage services and pages (issue 6): state machine, audit trail, append-only guard,
notifications, queue, claim-setup correction, the flag page and the public view."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from leaderboard.models import BenchmarkResult, Claim, Flag, FlagEvent, LeaderboardEntry, ModelSubmission
from leaderboard.services import flags, notifications
from leaderboard.services import triage as svc
from tests.leaderboard.test_triage_fixtures import (  # noqa: F401  (fixtures)
    append_only_trigger,
    clean_broker,
    make_flag,
    make_result,
    make_submission,
    maintainers_group_exists,
    people,
    scenario,
)

pytestmark = pytest.mark.django_db

S = Flag.Status
ALL_STATES = list(S.values)
LEGAL = {
    (S.OPEN, S.CONFIRMED), (S.OPEN, S.DISMISSED), (S.OPEN, S.RESOLVED),
    (S.CONFIRMED, S.RESOLVED), (S.CONFIRMED, S.OPEN),
    (S.DISMISSED, S.OPEN),
    (S.RESOLVED, S.OPEN),
}


def test_maintainers_group_exists_after_migrate_and_is_idempotent():
    # Created by the post_migrate receiver when the test database was built.
    assert maintainers_group_exists()
    group = svc.ensure_maintainers_group()
    assert svc.ensure_maintainers_group().pk == group.pk
    assert list(group.permissions.values_list("codename", flat=True)) == ["triage_flag"]


@pytest.mark.parametrize("current", ALL_STATES)
@pytest.mark.parametrize("target", ALL_STATES)
def test_state_machine_allows_exactly_the_legal_transitions(scenario, current, target):
    flag = scenario["flag"]
    Flag.objects.filter(pk=flag.pk).update(status=current, decision_reason="earlier decision")
    events_before = FlagEvent.objects.filter(flag=flag).count()
    if (current, target) in LEGAL:
        svc.do_transition(flag.pk, scenario["maintainer"], target, reason="because")
        flag.refresh_from_db()
        assert flag.status == target
        event = FlagEvent.objects.filter(flag=flag).last()
        assert (event.from_status, event.to_status, event.actor) == (current, target, scenario["maintainer"])
        assert event.action == svc.ACTION_FOR_TARGET[target]
    else:
        with pytest.raises(svc.IllegalTransition):
            svc.do_transition(flag.pk, scenario["maintainer"], target, reason="because")
        flag.refresh_from_db()
        assert flag.status == current
        assert FlagEvent.objects.filter(flag=flag).count() == events_before


def test_non_maintainers_cannot_change_state(scenario):
    flag = scenario["flag"]
    for user in (scenario["author"], scenario["other_author"]):
        for call in (
            lambda: svc.do_confirm(flag.pk, user),
            lambda: svc.do_dismiss(flag.pk, user, "not me"),
            lambda: svc.do_take(flag.pk, user),
            lambda: svc.do_request_rerun(flag.pk, user),
            lambda: svc.do_correct_claim_setup(flag.pk, user, shots=5, cot=True, chat_template=False, reason="x"),
        ):
            with pytest.raises(PermissionDenied):
                call()
    flag.refresh_from_db()
    assert flag.status == S.OPEN and flag.assignee is None
    assert FlagEvent.objects.filter(flag=flag).count() == 1


def test_dismissal_needs_a_reason_and_is_public_with_it(scenario):
    flag, maintainer = scenario["flag"], scenario["maintainer"]
    with pytest.raises(svc.TriageError, match="reason is required"):
        svc.do_dismiss(flag.pk, maintainer, "   ")
    assert svc.public_flag(Flag.objects.get(pk=flag.pk)).label == "under review"
    svc.do_dismiss(flag.pk, maintainer, "The claim used maj@32; our single-sample run is not comparable.")
    shown = svc.public_flag(Flag.objects.get(pk=flag.pk))
    assert shown.label == "dismissed" and "maj@32" in shown.reason
    assert shown.decided_at == FlagEvent.objects.get(flag=flag, action="dismissed").at
    # Reopening clears the public decision (the trail keeps it).
    svc.do_reopen(flag.pk, maintainer, "new evidence")
    reopened = Flag.objects.get(pk=flag.pk)
    assert reopened.decision_reason == "" and svc.public_flag(reopened).label == "under review"


def test_dismissed_info_flags_are_hidden_from_the_public(scenario):
    info = make_flag(scenario["submission"], kind=Flag.Kind.UNTRAINED_TOKENS, severity=Flag.Severity.INFO,
                     summary="3 added tokens have untrained embeddings")
    svc.do_dismiss(info.pk, scenario["maintainer"], "Tokens never used by the chat template.")
    assert svc.public_flag(Flag.objects.get(pk=info.pk)) is None
    shown = [item.flag.pk for item in svc.public_flags_for(scenario["submission"])]
    assert info.pk not in shown and scenario["flag"].pk in shown


def test_audit_trail_records_every_change_in_order(scenario):
    flag, mara, milo = scenario["flag"], scenario["maintainer"], scenario["maintainer2"]
    svc.do_take(flag.pk, mara)
    svc.do_assign(flag.pk, mara, milo)
    svc.do_reply(flag.pk, scenario["author"], "We evaluated with 8-shot CoT, see our card.")
    svc.do_note(flag.pk, milo, "Card says 5-shot.")
    svc.do_confirm(flag.pk, milo, "Measured far below the claim under the claimed setup.")
    svc.do_resolve(flag.pk, milo, "Author corrected the claim to 41.")
    svc.do_reopen(flag.pk, mara, "Correction was reverted.")
    trail = [(e.action, e.actor.username if e.actor else None, e.from_status, e.to_status, e.data.get("to"))
             for e in FlagEvent.objects.filter(flag=flag).order_by("at", "id")]
    assert trail == [
        ("raised", None, "", "open", None),
        ("assigned", "mara", "open", "open", "mara"),
        ("assigned", "mara", "open", "open", "milo"),
        ("reply", "alice", "open", "open", None),
        ("note", "milo", "open", "open", None),
        ("confirmed", "milo", "open", "confirmed", None),
        ("resolved", "milo", "confirmed", "resolved", None),
        ("reopened", "mara", "resolved", "open", None),
    ]
    # Status events chain: each starts where the previous one ended.
    status_events = [e for e in FlagEvent.objects.filter(flag=flag) if e.from_status != e.to_status]
    for before, after in zip(status_events, status_events[1:]):
        assert after.from_status == before.to_status
    # Taking a flag you already hold writes nothing.
    count = FlagEvent.objects.filter(flag=flag).count()
    svc.do_assign(flag.pk, mara, None)
    svc.do_assign(flag.pk, mara, None)
    assert FlagEvent.objects.filter(flag=flag).count() == count + 1


def test_only_maintainers_can_be_assigned(scenario):
    with pytest.raises(svc.TriageError, match="not a maintainer"):
        svc.check_assignee("alice")
    with pytest.raises(svc.TriageError, match="No user"):
        svc.check_assignee("nobody-here")
    with pytest.raises(svc.TriageError):
        svc.do_assign(scenario["flag"].pk, scenario["maintainer"], scenario["author"])


def test_events_cannot_be_updated_or_deleted_by_orm_or_sql(scenario, append_only_trigger):
    event = FlagEvent.objects.filter(flag=scenario["flag"]).get()
    event.message = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    refused = [
        lambda: FlagEvent.objects.filter(pk=event.pk).update(message="rewritten"),
        lambda: FlagEvent.objects.filter(pk=event.pk).delete(),
        lambda: connection.cursor().execute(
            "UPDATE leaderboard_flagevent SET message = 'rewritten' WHERE id = %s", [event.pk]),
        lambda: connection.cursor().execute("DELETE FROM leaderboard_flagevent WHERE id = %s", [event.pk]),
    ]
    for attempt in refused:
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic():
                attempt()
    event.refresh_from_db()
    assert event.message == scenario["flag"].summary
    # Appending still works.
    svc.do_note(scenario["flag"].pk, scenario["maintainer"], "still appendable")
    assert FlagEvent.objects.filter(flag=scenario["flag"]).count() == 2
    # The migration's reverse SQL removes the guard (and only that).
    with connection.cursor() as cursor:
        cursor.execute(svc.flag_event_trigger_reverse_sql(connection.vendor))
    assert FlagEvent.objects.filter(pk=event.pk).update(message="rewritten") == 1


def test_author_is_emailed_when_a_flag_is_raised_and_decided(
    scenario, mailoutbox, django_capture_on_commit_callbacks, eager_celery
):
    with django_capture_on_commit_callbacks(execute=True):
        flag = flags.do_raise_flag(scenario["submission"], None, {
            "kind": Flag.Kind.HELDOUT_GAP, "severity": Flag.Severity.WARNING, "benchmark": "gsm8k",
            "summary": "Held-out accuracy 12 points below public", "evidence": {}})
    assert len(mailoutbox) == 1
    raised = mailoutbox[0]
    assert raised.to == ["alice@example.org"] and "heldout_gap" in raised.subject
    assert reverse("flag_reply", args=[flag.pk]) in raised.body
    assert FlagEvent.objects.filter(flag=flag, action="raised").count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        svc.do_dismiss(flag.pk, scenario["maintainer"], "The held-out set had a known formatting shift.")
    decided = mailoutbox[1]
    assert decided.to == ["alice@example.org"] and "dismissed" in decided.subject
    assert "known formatting shift" in decided.body and "open -> dismissed" in decided.body

    # A maintainer's reply reaches the author; the author's reply reaches the assignee.
    svc.do_take(flag.pk, scenario["maintainer"])
    with django_capture_on_commit_callbacks(execute=True):
        svc.do_reply(flag.pk, scenario["maintainer"], "Could you share your prompt?")
        svc.do_reply(flag.pk, scenario["author"], "Sure, attached to the card.")
    assert [m.to for m in mailoutbox[2:]] == [["alice@example.org"], ["mara@example.org"]]
    # The pipeline's entry point works on its own, and a submission without an e-mail is skipped.
    assert notifications.do_notify_flag_raised(scenario["flag"]) is True
    anonymous = make_submission("anon-lab/x-1b", None)
    assert notifications.do_notify_flag_raised(make_flag(anonymous)) is False


def test_no_email_before_commit(scenario, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        svc.do_confirm(scenario["flag"].pk, scenario["maintainer"])
    assert mailoutbox == []
    for callback in callbacks:  # the commit happens: now the author hears of it
        callback()
    assert len(mailoutbox) == 1 and "confirmed" in mailoutbox[0].subject


def test_leaderboard_badge_follows_decisions(scenario):
    flag, maintainer = scenario["flag"], scenario["maintainer"]
    # As the pipeline publishes: a report whose every check ran (a flagged submission with no
    # report ran no check, and is incomplete once its flags are decided).
    ModelSubmission.objects.filter(pk=scenario["submission"].pk).update(report={"run": {"checks": []}})
    svc.do_confirm(flag.pk, maintainer, "confirmed")
    assert LeaderboardEntry.objects.get(submission=scenario["submission"]).badge == "flagged"
    svc.do_resolve(flag.pk, maintainer, "author withdrew the claim")
    entry = LeaderboardEntry.objects.get(submission=scenario["submission"])
    assert entry.badge == "verified"


def test_queue_default_is_oldest_critical_first_with_filters_and_counts(scenario):
    submission = scenario["submission"]
    old_warning = make_flag(submission, severity=Flag.Severity.WARNING, age=timedelta(days=9))
    new_critical = make_flag(submission, severity=Flag.Severity.CRITICAL, age=timedelta(hours=1))
    old_critical = make_flag(submission, severity=Flag.Severity.CRITICAL, age=timedelta(days=3))
    info = make_flag(submission, kind=Flag.Kind.UNTRAINED_TOKENS, severity=Flag.Severity.INFO, age=timedelta(days=30))
    closed = make_flag(submission, age=timedelta(days=40))
    svc.do_dismiss(closed.pk, scenario["maintainer"], "duplicate")

    default = svc.triage_queue(svc.QueueFilters(), scenario["maintainer"])
    ids = [flag.pk for flag in default]
    assert ids[:3] == [old_critical.pk, new_critical.pk, scenario["flag"].pk]
    assert ids.index(old_warning.pk) < ids.index(info.pk) and closed.pk not in ids

    only_info = svc.QueueFilters.from_params({"severity": "info"})
    assert [f.pk for f in svc.triage_queue(only_info)] == [info.pk]
    oldest = svc.QueueFilters.from_params({"sort": "oldest", "status": "all"})
    assert [f.pk for f in svc.triage_queue(oldest)][0] == closed.pk
    svc.do_take(old_warning.pk, scenario["maintainer2"])
    mine = svc.QueueFilters.from_params({"assignee": "me"})
    assert [f.pk for f in svc.triage_queue(mine, scenario["maintainer2"])] == [old_warning.pk]
    by_model = svc.QueueFilters.from_params({"model": "oscar"})
    assert [f.pk for f in svc.triage_queue(by_model)] == [scenario["other_flag"].pk]

    counts = svc.queue_counts_by_kind(svc.QueueFilters.from_params({"kind": "contamination"}))
    assert counts["score_mismatch"] == 4 and counts["contamination"] == 1 and counts["untrained_tokens"] == 1
    for bad in ({"sort": "drop table"}, {"kind": "nope"}, {"status": "maybe"}, {"severity": "loud"}):
        with pytest.raises(svc.TriageError):
            svc.QueueFilters.from_params(bad)


def test_correct_claim_setup_recompares_from_stored_results(scenario, django_capture_on_commit_callbacks, mailoutbox):
    """The claim (70 on gsm8k) was recorded as 8-shot CoT, where we measured 40%. The card
    actually says 5-shot without CoT, which the run also measured (69.5%): re-compared, the claim
    is consistent and the flag resolves; corrected back, it is re-raised."""
    flag, maintainer, run = scenario["flag"], scenario["maintainer"], scenario["run"]
    five_shot = make_result(run, "gsm8k", correct=139, n=200, setup={"shots": 5, "cot": False, "chat_template": False})
    eight_shot = BenchmarkResult.objects.get(run=run, benchmark="gsm8k", setup__shots=8)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = svc.do_correct_claim_setup(flag.pk, maintainer, shots=5, cot=False, chat_template=False,
                                             reason="Model card table: 5-shot, no CoT")
    assert outcome.result.pk == five_shot.pk and outcome.verdict == "consistent" and abs(outcome.z) < 2
    flag.refresh_from_db()
    five_shot.refresh_from_db()
    eight_shot.refresh_from_db()
    claim = Claim.objects.get(submission=scenario["submission"], benchmark="gsm8k")
    assert (claim.shots, claim.cot, claim.corrected_by) == (5, False, maintainer)
    assert (five_shot.claimed, five_shot.verdict) == (70.0, "consistent")
    assert (eight_shot.claimed, eight_shot.verdict, eight_shot.z) == (None, "unclaimed", None)
    assert flag.status == S.RESOLVED and "consistent" in flag.decision_reason
    actions = list(FlagEvent.objects.filter(flag=flag).values_list("action", flat=True))
    assert actions == ["raised", "claim_corrected", "resolved"]
    corrected = FlagEvent.objects.get(flag=flag, action="claim_corrected")
    assert corrected.data["old_setup"] == {"shots": 8, "cot": True, "chat_template": False}
    assert corrected.data["verdict"] == "consistent" and corrected.data["result_id"] == five_shot.pk
    assert "resolved" in mailoutbox[-1].subject

    svc.do_correct_claim_setup(flag.pk, maintainer, shots=8, cot=True, chat_template=False,
                               reason="The 5-shot row was for the base model")
    flag.refresh_from_db()
    eight_shot.refresh_from_db()
    assert flag.status == S.OPEN and flag.severity == Flag.Severity.CRITICAL
    assert eight_shot.verdict == "inconsistent" and eight_shot.z > 3
    assert list(FlagEvent.objects.filter(flag=flag).values_list("action", flat=True))[-2:] == [
        "claim_corrected", "reopened"]


def test_correct_claim_setup_refuses_what_was_never_measured(scenario):
    flag = scenario["flag"]
    with pytest.raises(svc.TriageError, match="request a re-run"):
        svc.do_correct_claim_setup(flag.pk, scenario["maintainer"], shots=25, cot=False, chat_template=True,
                                   reason="25-shot in the paper")
    # Nothing was kept from the refused correction.
    claim = Claim.objects.get(submission=scenario["submission"], benchmark="gsm8k")
    assert (claim.shots, claim.corrected_by) == (8, None)
    assert FlagEvent.objects.filter(flag=flag).count() == 1
    for bad in ({"shots": 65}, {"shots": -1}, {"shots": "5"}, {"cot": "yes"}):
        values = {"shots": None, "cot": None, "chat_template": None, **bad}
        with pytest.raises(svc.TriageError):
            svc.do_correct_claim_setup(flag.pk, scenario["maintainer"], reason="x", **values)
    with pytest.raises(svc.TriageError, match="score_mismatch"):
        svc.do_correct_claim_setup(scenario["other_flag"].pk, scenario["maintainer"], shots=5, cot=None,
                                   chat_template=None, reason="x")


def _login(client, user):
    client.force_login(user)
    return client


def test_flag_page_renders_evidence_comparison_samples_and_trail(scenario, client):
    flag = scenario["flag"]
    svc.do_reply(flag.pk, scenario["author"], "Our harness used 8-shot CoT with maj@1.")
    response = _login(client, scenario["maintainer"]).get(reverse("triage:flag", args=[flag.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    # Claim and measurement side by side, with the interval.
    assert "70.0" in html and "40.0 [33.5, 46.9]" in html and "inconsistent" in html
    # Evidence JSON as a definition list (no include for score_mismatch).
    flat = html.replace("\n", "")
    assert "<dt>claimed</dt><dd>70</dd>" in flat and "<dt>ci</dt><dd><ul class=\"evidence\"><li>33.5</li>" in flat
    # The samples behind it (wrong answers first) and the author's reply in the trail.
    assert 'id="samples"' in html and "Question 80" in html
    assert "Our harness used 8-shot CoT" in html
    # The run record: inline, and linked to the public run record on the model page.
    assert f"/models/alice-lab/math-7b/?submission={scenario['submission'].pk}#run-record" in html
    assert f"alice-lab/math-7b@{'a' * 40}" in html and 'id="run-record"' in html


def test_evidence_tree_renders_nested_json_readably():
    from leaderboard.triage import evidence_tree

    tree = evidence_tree({"layers": [{"name": "q_proj", "cosine": 0.99871}, {"name": "k_proj", "cosine": 0.5}],
                          "ok": True, "tokens": ["<a>", "<b>"], "nothing": None})
    kinds = {key: node["type"] for key, node in tree["items"]}
    assert kinds == {"layers": "table", "ok": "scalar", "tokens": "list", "nothing": "scalar"}
    table = dict(tree["items"])["layers"]
    assert table["columns"] == ["name", "cosine"] and table["rows"][0][1]["text"] == "0.999"
    assert dict(tree["items"])["ok"]["text"] == "yes" and dict(tree["items"])["nothing"]["text"] == "—"


def test_action_views_redirect_and_report_conflicts(scenario, client):
    flag = scenario["flag"]
    client = _login(client, scenario["maintainer"])
    url = lambda action: reverse("triage:action", args=[flag.pk, action])  # noqa: E731
    assert client.post(url("take")).status_code == 302
    response = client.post(url("dismiss"), {"reason": ""})
    assert response.status_code == 400 and b"reason is required" in response.content
    assert client.post(url("confirm"), {"reason": "clear"}).status_code == 302
    # Stale page: someone already confirmed, a dismissal is no longer legal from that state.
    response = client.post(url("dismiss"), {"reason": "noise"})
    assert response.status_code == 409 and b"cannot become dismissed" in response.content
    assert client.post(url("explode")).status_code == 404
    assert client.get(url("confirm")).status_code == 405
    flag.refresh_from_db()
    assert flag.status == S.CONFIRMED and flag.assignee == scenario["maintainer"]
    assert client.get(reverse("triage:queue") + "?sort=nonsense").status_code == 400


def test_reply_view_for_the_author_and_safe_redirects(scenario, client):
    flag = scenario["flag"]
    client = _login(client, scenario["author"])
    page = client.get(reverse("flag_reply", args=[flag.pk]))
    assert page.status_code == 200 and b"under review" in page.content
    response = client.post(reverse("flag_reply", args=[flag.pk]),
                           {"message": "We used a different prompt.", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == reverse("flag_reply", args=[flag.pk])
    response = client.post(reverse("flag_reply", args=[flag.pk]), {"message": "More.", "next": "/models/x/y/"})
    assert response["Location"] == "/models/x/y/"
    assert client.post(reverse("flag_reply", args=[flag.pk]), {"message": "  "}).status_code == 400
    replies = FlagEvent.objects.filter(flag=flag, action="reply")
    assert [(e.actor.username, e.data["role"]) for e in replies] == [("alice", "author"), ("alice", "author")]


def test_rerun_queues_verify_submission_at_the_same_sha(scenario, clean_broker, django_capture_on_commit_callbacks):
    from tests.leaderboard.test_triage_fixtures import verify_submission_messages

    submission, flag = scenario["submission"], scenario["flag"]
    clean_broker.append(submission.pk)
    verify_submission_messages(submission.pk, remove=True)
    with django_capture_on_commit_callbacks(execute=True):
        svc.do_request_rerun(flag.pk, scenario["maintainer"], "a worker crashed mid-run last time")
    submission.refresh_from_db()
    assert submission.status == "queued" and submission.pinned_sha == "a" * 40
    assert len(verify_submission_messages(submission.pk)) == 1  # really on the Redis broker
    event = FlagEvent.objects.get(flag=flag, action="rerun_requested")
    assert event.data["sha"] == "a" * 40 and event.data["submission_status_before"] == "flagged"
    assert event.actor == scenario["maintainer"]
    # A second request while that run is queued is refused and queues nothing.
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(svc.TriageError, match="already queued"):
            svc.do_request_rerun(flag.pk, scenario["maintainer2"])
    assert len(verify_submission_messages(submission.pk)) == 1
    assert FlagEvent.objects.filter(flag=flag, action="rerun_requested").count() == 1


def test_flag_page_uses_the_report_include_for_its_kind_when_it_exists(scenario, client, settings, tmp_path):
    """A contamination flag renders through includes/contamination.html (written by the
    contamination engineer) with the report's section; here a stand-in include in a template
    directory placed first proves the wiring, whatever the real include prints."""
    includes = tmp_path / "includes"
    includes.mkdir()
    (includes / "contamination.html").write_text(
        '<div id="stand-in">overlap {{ section.overlap_rate }} on {{ flag.benchmark }}</div>')
    original_dirs = list(settings.TEMPLATES[0]["DIRS"])
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *original_dirs]}]
    other = scenario["other_submission"]
    other.report = {"schema": "verity.report/1", "contamination": {"overlap_rate": 0.42}}
    other.save(update_fields=["report"])
    client.force_login(scenario["maintainer"])
    html = client.get(reverse("triage:flag", args=[scenario["other_flag"].pk])).content.decode()
    assert '<div id="stand-in">overlap 0.42 on gsm8k</div>' in html
    # A kind whose include does not exist falls back to the readable evidence list.
    html = client.get(reverse("triage:flag", args=[scenario["flag"].pk])).content.decode()
    assert "stand-in" not in html and "<dt>claimed</dt>" in html
    # So does a broken include: the maintainer still sees the evidence.
    (includes / "contamination.html").write_text("{% if %}broken")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *original_dirs]}]  # drops cached templates
    response = client.get(reverse("triage:flag", args=[scenario["other_flag"].pk]))
    assert response.status_code == 200 and "<dt>claimed</dt>" in response.content.decode()


def test_append_only_trigger_sql_for_sqlite_refuses_update_and_delete():
    """The development database (make run) is SQLite; the same guard exists there."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE leaderboard_flagevent (id INTEGER PRIMARY KEY, message TEXT)")
    db.executescript(svc.flag_event_trigger_sql("sqlite"))
    db.execute("INSERT INTO leaderboard_flagevent (message) VALUES ('raised')")
    for statement in ("UPDATE leaderboard_flagevent SET message = 'x'", "DELETE FROM leaderboard_flagevent"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    assert db.execute("SELECT message FROM leaderboard_flagevent").fetchall() == [("raised",)]
    db.executescript(svc.flag_event_trigger_reverse_sql("sqlite"))
    db.execute("DELETE FROM leaderboard_flagevent")
    with pytest.raises(ValueError):
        svc.flag_event_trigger_sql("oracle")
