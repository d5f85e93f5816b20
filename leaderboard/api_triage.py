"""Triage API, mounted by the site's API as `api.add_router("/triage", router)`.

Same rules as the triage pages: session authentication with CSRF (ninja's cookie auth checks
it), the triage permission on every endpoint, 403 for everyone else (anonymous included), and
the same services (leaderboard.services.triage) doing the checks and the writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from ninja.security import SessionAuth

from leaderboard import selectors
from leaderboard.models import Flag
from leaderboard.services import triage as triage_service
from leaderboard.services.triage import IllegalTransition, QueueFilters, TriageError
from leaderboard.triage import perform_action


class MaintainerSessionAuth(SessionAuth):
    """Django session + CSRF, and the triage permission; refusals are 403 (not 401), as on
    the triage pages."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if not triage_service.is_maintainer(request.user):
            raise HttpError(403, "Only maintainers can triage flags.")
        return request.user


router = Router(auth=MaintainerSessionAuth(), tags=["triage"])


class FlagOut(Schema):
    id: int
    kind: str
    severity: str
    status: str
    benchmark: str
    summary: str
    model: str
    sha: str
    submission_id: int
    run_id: int | None
    assignee: str | None
    decision_reason: str
    created_at: datetime
    updated_at: datetime
    age_seconds: float

    @staticmethod
    def from_flag(flag: Flag, now: datetime) -> "FlagOut":
        return FlagOut(
            id=flag.pk, kind=flag.kind, severity=flag.severity, status=flag.status, benchmark=flag.benchmark,
            summary=flag.summary, model=flag.submission.repo_id, sha=flag.submission.pinned_sha,
            submission_id=flag.submission_id, run_id=flag.run_id,
            assignee=flag.assignee.get_username() if flag.assignee_id else None,
            decision_reason=flag.decision_reason, created_at=flag.created_at, updated_at=flag.updated_at,
            age_seconds=(now - flag.created_at).total_seconds(),
        )


class QueueOut(Schema):
    count: int
    counts_by_kind: dict[str, int]
    flags: list[FlagOut]


class EventOut(Schema):
    id: int
    at: datetime
    actor: str | None
    action: str
    from_status: str
    to_status: str
    message: str
    data: dict[str, Any]


class FlagDetailOut(Schema):
    flag: FlagOut
    evidence: dict[str, Any]
    events: list[EventOut]


class QueueQuery(Schema):
    status: str = Field("open", description="open|confirmed|dismissed|resolved|all")
    kind: str = ""
    severity: str = ""
    benchmark: str = ""
    model: str = ""
    assignee: str = Field("", description="me|none|<username>")
    sort: str = "severity"
    limit: int = Field(100, ge=1, le=500)


class ActionIn(Schema):
    action: Literal["take", "assign", "confirm", "dismiss", "resolve", "reopen", "rerun", "note", "correct-claim"]
    reason: str = ""
    message: str = ""
    assignee: str = ""
    shots: int | None = None
    cot: bool | None = None
    chat_template: bool | None = None


class ErrorOut(Schema):
    detail: str


def _detail(flag: Flag, viewer: Any) -> FlagDetailOut:
    events = [
        EventOut(id=event.pk, at=event.at, actor=event.actor.get_username() if event.actor_id else None,
                 action=event.action, from_status=event.from_status, to_status=event.to_status,
                 message=event.message, data=event.data)
        for event in triage_service.flag_thread(flag, viewer)
    ]
    return FlagDetailOut(flag=FlagOut.from_flag(flag, timezone.now()), evidence=flag.evidence or {}, events=events)


def _flag_or_404(flag_id: int) -> Flag:
    return selectors.flag_with_context(flag_id, "assignee")


@router.get("/flags", response={200: QueueOut, 400: ErrorOut})
def list_queue(request: HttpRequest, query: Query[QueueQuery]):
    try:
        filters = QueueFilters.from_params(query.dict())
    except TriageError as exc:
        return 400, {"detail": str(exc)}
    queryset = triage_service.triage_queue(filters, request.user)
    now = timezone.now()
    flags = [FlagOut.from_flag(flag, now) for flag in queryset[: query.limit]]
    return 200, QueueOut(count=queryset.count(), counts_by_kind=triage_service.queue_counts_by_kind(filters, request.user),
                         flags=flags)


@router.get("/flags/{flag_id}", response=FlagDetailOut)
def flag_detail(request: HttpRequest, flag_id: int):
    return _detail(_flag_or_404(flag_id), request.user)


@router.post("/flags/{flag_id}/actions", response={200: FlagDetailOut, 400: ErrorOut, 409: ErrorOut})
def act_on_flag(request: HttpRequest, flag_id: int, payload: ActionIn):
    flag = _flag_or_404(flag_id)
    params = payload.dict()
    # perform_action reads form-style values; booleans and ints go through as strings it parses.
    for name in ("shots", "cot", "chat_template"):
        value = params[name]
        params[name] = "" if value is None else str(value).lower()
    try:
        perform_action(flag.pk, request.user, payload.action, params)
    except IllegalTransition as exc:
        return 409, {"detail": str(exc)}
    except TriageError as exc:
        return 400, {"detail": str(exc)}
    return 200, _detail(_flag_or_404(flag_id), request.user)
