"""Maintainers' triage pages: the queue, a flag's page and its actions, and the author's reply.

Every triage URL answers 403 to anyone without the triage permission (anonymous included: a
login redirect would tell nothing useful and hide the refusal from API-style clients). The
rules and writes are leaderboard.services.triage's; this module also turns a flag's evidence
into a tree the templates render, and picks the report section shown next to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from leaderboard import selectors
from leaderboard.models import Flag
from leaderboard.services import triage as triage_service
from leaderboard.services.triage import IllegalTransition, QueueFilters, TriageError

# The report section (verity.report/1) whose check raises each kind of flag; its include
# (includes/<section>.html) shows the flag's evidence in context. Other kinds get the
# generic evidence view only.
REPORT_SECTION_FOR_KIND: dict[str, str] = {
    Flag.Kind.BASE_MODEL_MISMATCH: "provenance",
    Flag.Kind.LORA_MERGE: "provenance",
    Flag.Kind.UNTRAINED_TOKENS: "provenance",
    Flag.Kind.WEIGHTS_CHANGED: "provenance",
    Flag.Kind.CONTAMINATION: "contamination",
    Flag.Kind.HELDOUT_GAP: "contamination",
    Flag.Kind.ENDPOINT_MISMATCH: "endpoint",
}
QUEUE_PAGE_SIZE = 200

log = logging.getLogger(__name__)


def maintainer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        triage_service.check_can_triage(request.user)
        return view(request, *args, **kwargs)

    return wrapped


def model_url(flag: Flag) -> str:
    org, name = flag.submission.repo_id.split("/", 1)  # the database only holds "org/name" ids
    return reverse("model", args=[org, name])


def run_url(flag: Flag) -> str:
    """The public run record: the run section of the model page, for the flag's submission."""
    if flag.run_id is None:
        return ""
    return f"{model_url(flag)}?submission={flag.submission_id}#run-record"


def run_admin_url(flag: Flag) -> str:
    if flag.run_id is None:
        return ""
    return reverse("admin:leaderboard_evaluationrun_change", args=[flag.run_id])


# --- evidence as a readable tree ---------------------------------------------------------------


def _scalar_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e6 else f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def evidence_tree(value: Any, depth: int = 0) -> dict[str, Any]:
    """Evidence JSON as nodes a template can render without type tests: dicts become definition
    lists, lists of same-shaped dicts become tables, other lists become bullet lists."""
    if depth > 6:
        return {"type": "scalar", "text": json.dumps(value)[:500]}
    if isinstance(value, dict):
        return {
            "type": "dict",
            "items": [(str(key).replace("_", " "), evidence_tree(item, depth + 1)) for key, item in value.items()],
        }
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            columns: list[str] = []
            for item in value:
                columns.extend(key for key in item if key not in columns)
            rows = [[evidence_tree(item.get(column), depth + 1) for column in columns] for item in value[:200]]
            return {"type": "table", "columns": [c.replace("_", " ") for c in columns], "rows": rows,
                    "truncated": max(0, len(value) - 200)}
        return {"type": "list", "items": [evidence_tree(item, depth + 1) for item in value[:200]],
                "truncated": max(0, len(value) - 200)}
    return {"type": "scalar", "text": _scalar_text(value)}


def render_evidence_include(flag: Flag, context: dict[str, Any], request: HttpRequest) -> str | None:
    """The report-section include for the flag's kind, rendered, or None when there is none (or
    it fails on this flag's data: the maintainer then still gets the generic evidence view, and
    the failure is logged so the include can be fixed)."""
    section = REPORT_SECTION_FOR_KIND.get(flag.kind)
    if section is None:
        return None
    name = f"includes/{section}.html"
    try:
        return get_template(name).render(context, request)
    except TemplateDoesNotExist:
        return None
    except Exception:
        log.exception("evidence include %s failed for flag %s", name, flag.pk)
        return None


# --- pages ---------------------------------------------------------------------------------------


@require_GET
@maintainer_required
def queue(request: HttpRequest) -> HttpResponse:
    error = ""
    try:
        filters = QueueFilters.from_params(request.GET)
    except TriageError as exc:
        error, filters = str(exc), QueueFilters()
    flags = list(triage_service.triage_queue(filters, request.user)[:QUEUE_PAGE_SIZE])
    context = {
        "flags": flags,
        "filters": filters,
        "counts": triage_service.queue_counts_by_kind(filters, request.user),
        "kinds": Flag.Kind.choices,
        "severities": Flag.Severity.choices,
        "statuses": Flag.Status.choices,
        "sorts": list(triage_service.QUEUE_SORTS),
        "error": error,
        "page_size": QUEUE_PAGE_SIZE,
    }
    return render(request, "triage/queue.html", context, status=400 if error else 200)


def _flag_page(request: HttpRequest, flag: Flag, *, error: str = "", status: int = 200) -> HttpResponse:
    report = flag.submission.report or {}
    section = report.get(REPORT_SECTION_FOR_KIND.get(flag.kind, "")) or flag.evidence or {}
    include_html = render_evidence_include(
        flag, {"flag": flag, "section": section, "report": report, "submission": flag.submission,
               "evidence": flag.evidence or {}}, request,
    )
    context = {
        "flag": flag,
        "submission": flag.submission,
        "comparison": triage_service.flag_comparison(flag),
        "samples": triage_service.flag_samples(flag),
        "events": triage_service.flag_thread(flag, request.user),
        "evidence_include_html": include_html,
        "evidence": flag.evidence or {},
        "evidence_tree": evidence_tree(flag.evidence or {}),
        "run_url": run_url(flag),
        "run_admin_url": run_admin_url(flag),
        "model_url": model_url(flag),
        "maintainers": selectors.active_maintainers(triage_service.MAINTAINERS_GROUP),
        "transitions": sorted(triage_service.TRANSITIONS.get(flag.status, ())),
        "public": triage_service.public_flag(flag),
        "error": error,
    }
    return render(request, "triage/flag.html", context, status=status)


@require_GET
@maintainer_required
def flag_detail(request: HttpRequest, flag_id: int) -> HttpResponse:
    return _flag_page(request, selectors.flag_with_context(flag_id, "assignee", "run"))


def _optional_bool(raw: str | None) -> bool | None:
    if raw in (None, "", "unknown"):
        return None
    if raw in ("true", "on", "1", "yes"):
        return True
    if raw in ("false", "off", "0", "no"):
        return False
    raise TriageError(f"Expected yes, no or unknown, got {raw!r}.")


def _optional_int(raw: str | None) -> int | None:
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise TriageError(f"Expected a whole number, got {raw!r}.") from None


def perform_action(flag_id: int, user: Any, action: str, params: Any) -> None:
    """Run one triage action from form/API parameters (shared by the views and the API)."""
    reason = params.get("reason", "")
    if action == "take":
        triage_service.do_take(flag_id, user)
    elif action == "assign":
        triage_service.do_assign(flag_id, user, triage_service.check_assignee(params.get("assignee", "")))
    elif action == "confirm":
        triage_service.do_confirm(flag_id, user, reason)
    elif action == "dismiss":
        triage_service.do_dismiss(flag_id, user, reason)
    elif action == "resolve":
        triage_service.do_resolve(flag_id, user, reason)
    elif action == "reopen":
        triage_service.do_reopen(flag_id, user, reason)
    elif action == "rerun":
        triage_service.do_request_rerun(flag_id, user, reason)
    elif action == "note":
        triage_service.do_note(flag_id, user, params.get("message", "") or reason)
    elif action == "correct-claim":
        triage_service.do_correct_claim_setup(
            flag_id, user,
            shots=_optional_int(params.get("shots")),
            cot=_optional_bool(params.get("cot")),
            chat_template=_optional_bool(params.get("chat_template")),
            reason=reason,
        )
    else:
        raise Http404("Unknown triage action.")


ACTIONS = ("take", "assign", "confirm", "dismiss", "resolve", "reopen", "rerun", "note", "correct-claim")


@require_POST
@maintainer_required
def flag_action(request: HttpRequest, flag_id: int, action: str) -> HttpResponse:
    flag = get_object_or_404(Flag, pk=flag_id)
    try:
        perform_action(flag.pk, request.user, action, request.POST)
    except TriageError as exc:
        flag = selectors.flag_with_context(flag_id, "assignee", "run")
        # 409: the request was fine but the flag's current state refuses it (someone else acted).
        return _flag_page(request, flag, error=str(exc), status=409 if isinstance(exc, IllegalTransition) else 400)
    return HttpResponseRedirect(reverse("triage:flag", args=[flag_id]))


@require_http_methods(["GET", "POST"])
def flag_reply(request: HttpRequest, flag_id: int) -> HttpResponse:
    """The flag's thread for its submission's author (and maintainers): read it, reply to it.
    The public model page posts replies here too, with `next` to come back."""
    flag = selectors.flag_with_context(flag_id, "assignee", "run")
    triage_service.check_can_see_thread(request.user, flag)
    error = ""
    if request.method == "POST":
        try:
            triage_service.do_reply(flag.pk, request.user, request.POST.get("message", ""))
        except TriageError as exc:
            error = str(exc)
        else:
            next_url = request.POST.get("next", "")
            if next_url and url_has_allowed_host_and_scheme(
                next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            ):
                return HttpResponseRedirect(next_url)
            return HttpResponseRedirect(reverse("flag_reply", args=[flag.pk]))
    context = {
        "flag": flag,
        "events": triage_service.flag_thread(flag, request.user),
        "public": triage_service.public_flag(flag),
        "is_maintainer": triage_service.is_maintainer(request.user),
        "error": error,
        "evidence_tree": evidence_tree(flag.evidence or {}),
    }
    return render(request, "triage/reply.html", context, status=400 if error else 200)

