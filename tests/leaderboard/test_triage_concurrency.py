"""Two maintainers acting on one flag at the same time, on the real PostgreSQL: two threads,
two connections, a barrier. No event may be lost and no impossible state stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from leaderboard.models import Flag, FlagEvent
from leaderboard.services import triage as svc
from tests.leaderboard.test_triage_fixtures import clean_broker, make_flag, make_submission, make_user  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

S = Flag.Status
BARRIER_TIMEOUT_S = 20


def _run_in_threads(*jobs: Callable[[threading.Barrier], Any]) -> list[Any]:
    """Run each job in its own thread (its own DB connection); returns results or exceptions."""
    barrier = threading.Barrier(len(jobs), timeout=BARRIER_TIMEOUT_S)
    outcomes: list[Any] = [None] * len(jobs)

    def runner(index: int, job: Callable[[threading.Barrier], Any]) -> None:
        try:
            outcomes[index] = job(barrier)
        except Exception as exc:  # collected and asserted by the test
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a triage thread hung (deadlock?)"
    return outcomes


def _assert_trail_consistent(flag: Flag) -> None:
    """Status events chain from 'open' to the flag's stored state; assignment events chain too."""
    events = list(FlagEvent.objects.filter(flag=flag).order_by("at", "id"))
    state = ""
    assignee = ""
    for event in events:
        if event.from_status != event.to_status or event.action == FlagEvent.Action.RAISED:
            assert event.from_status == state, f"event {event.action} starts from {event.from_status}, state was {state}"
            assert event.to_status in svc.TRANSITIONS.get(state, {S.OPEN}) or state == ""
            state = event.to_status
        else:
            assert event.to_status == state
        if event.action == FlagEvent.Action.ASSIGNED:
            assert event.data["from"] == assignee, "an assignment event lost the previous assignee"
            assignee = event.data["to"]
    flag.refresh_from_db()
    assert flag.status == state
    assert (flag.assignee.username if flag.assignee else "") == assignee


@pytest.fixture
def race(transactional_db) -> dict[str, Any]:
    svc.ensure_maintainers_group()
    mara = make_user("mara", maintainer=True)
    milo = make_user("milo", maintainer=True)
    author = make_user("alice")
    flag = make_flag(make_submission("alice-lab/math-7b", author))
    return {"flag": flag, "mara": mara, "milo": milo}


def test_decision_while_another_holds_the_row_waits_and_sees_the_new_state(race):
    """Deterministic interleaving: mara confirms and keeps her transaction open; milo's dismissal
    (from a page that still showed 'open') must wait for her commit, then be refused."""
    flag_id = race["flag"].pk

    def mara(barrier: threading.Barrier) -> str:
        with transaction.atomic():
            svc.do_confirm(flag_id, race["mara"], "clear mismatch")
            barrier.wait()  # milo starts while the row lock is held
            time.sleep(0.5)
        return "confirmed"

    def milo(barrier: threading.Barrier) -> str:
        barrier.wait()
        started = time.monotonic()
        try:
            svc.do_dismiss(flag_id, race["milo"], "looks like noise")
        finally:
            milo.waited = time.monotonic() - started  # type: ignore[attr-defined]
        return "dismissed"

    outcomes = _run_in_threads(mara, milo)
    assert outcomes[0] == "confirmed"
    assert isinstance(outcomes[1], svc.IllegalTransition), outcomes[1]
    assert milo.waited >= 0.3  # type: ignore[attr-defined]  # it really blocked on the lock
    flag = Flag.objects.get(pk=flag_id)
    assert flag.status == S.CONFIRMED and flag.decision_reason == "clear mismatch"
    assert list(FlagEvent.objects.filter(flag=flag).values_list("action", flat=True)) == ["raised", "confirmed"]
    _assert_trail_consistent(flag)


def test_simultaneous_conflicting_decisions_leave_one_winner_each_round(race):
    flag_id = race["flag"].pk
    rounds = 4
    for round_index in range(rounds):
        def confirm(barrier: threading.Barrier) -> str:
            barrier.wait()
            svc.do_confirm(flag_id, race["mara"], f"round {round_index}")
            return S.CONFIRMED

        def dismiss(barrier: threading.Barrier) -> str:
            barrier.wait()
            svc.do_dismiss(flag_id, race["milo"], f"round {round_index}")
            return S.DISMISSED

        outcomes = _run_in_threads(confirm, dismiss)
        winners = [o for o in outcomes if isinstance(o, str)]
        losers = [o for o in outcomes if isinstance(o, Exception)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert isinstance(losers[0], svc.IllegalTransition), losers[0]
        flag = Flag.objects.get(pk=flag_id)
        assert flag.status == winners[0]
        _assert_trail_consistent(flag)
        svc.do_reopen(flag_id, race["mara"], "next round")
    decisions = FlagEvent.objects.filter(flag_id=flag_id, action__in=["confirmed", "dismissed"]).count()
    assert decisions == rounds
    assert FlagEvent.objects.filter(flag_id=flag_id).count() == 1 + 2 * rounds


def test_two_maintainers_taking_the_flag_at_once_keep_both_assignments(race):
    flag_id = race["flag"].pk

    def mara(barrier: threading.Barrier) -> None:
        with transaction.atomic():
            svc.do_take(flag_id, race["mara"])
            barrier.wait()
            time.sleep(0.3)

    def milo(barrier: threading.Barrier) -> None:
        barrier.wait()
        svc.do_take(flag_id, race["milo"])

    assert _run_in_threads(mara, milo) == [None, None]
    assignments = list(FlagEvent.objects.filter(flag_id=flag_id, action="assigned").order_by("id"))
    assert [(e.data["from"], e.data["to"]) for e in assignments] == [("", "mara"), ("mara", "milo")]
    _assert_trail_consistent(Flag.objects.get(pk=flag_id))


def test_two_rerun_requests_at_once_queue_one_run(race, clean_broker):
    from tests.leaderboard.test_triage_fixtures import verify_submission_messages

    flag = race["flag"]
    clean_broker.append(flag.submission_id)
    verify_submission_messages(flag.submission_id, remove=True)

    def request(user_key: str) -> Callable[[threading.Barrier], str]:
        def job(barrier: threading.Barrier) -> str:
            barrier.wait()
            svc.do_request_rerun(flag.pk, race[user_key], "flaky")
            return "queued"
        return job

    outcomes = _run_in_threads(request("mara"), request("milo"))
    assert sorted(type(o).__name__ for o in outcomes) == ["TriageError", "str"], outcomes
    assert FlagEvent.objects.filter(flag=flag, action="rerun_requested").count() == 1
    assert len(verify_submission_messages(flag.submission_id)) == 1
