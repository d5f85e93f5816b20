"""The public site's pages: the leaderboard, plots, accounts, submitting and following a run, a
model's page and its sample explorer. Each view parses its input (leaderboard.forms), reads
through leaderboard.selectors and renders a template; submissions are created by
leaderboard.services.submissions. The board's numbers are precomputed in LeaderboardEntry rows
(leaderboard.services.leaderboard)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template, render_to_string
from django.templatetags.static import static
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from leaderboard import oauth, plots, selectors
from leaderboard.jinja import render_body, render_page
from leaderboard.safety_profile import safety_profile, xstest_metrics
from leaderboard.forms import ApiTokenForm, LeaderboardQuery, SampleQuery, SignUpForm, SubmissionForm
from leaderboard.models import ApiToken, EvaluationRun, ModelSubmission, SubmissionKind
from leaderboard.services import ownership, quotas
from leaderboard.services import triage as triage_service
from leaderboard.services.card_claims import card_claims
from leaderboard.services.leaderboard import (
    BADGE_FLAG_STATES,
    BOARD_CACHE_SECONDS,
    SIZE_CLASSES,
    board_cache_key,
    latest_finished_run,
    leaderboard_benchmarks,
    unlisted_reason,
)
from leaderboard.services.submissions import (
    PENDING_STATUSES,
    SubmissionError,
    do_create_submission,
    do_withdraw_submission,
)
from verification.vocabulary import FLAGGING_SEVERITIES, MAX_ERROR_RATE, REPORT_SECTIONS
from workers.storage import claims_doc


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


# --- leaderboard ---------------------------------------------------------------------------------


def board_fragment(params: dict[str, Any], query_string: str) -> str:
    """The ranked table (rows + pager) for these parameters. Rendering 50 rows is most of the
    page's cost: the fragment is a Jinja2 template (six times faster here than a Django one) and
    is cached briefly (see BOARD_CACHE_SECONDS); it holds nothing user-specific."""
    key = board_cache_key("page", query_string)
    html = cache.get(key)
    if html is None:
        page, rows = selectors.board_page(params)
        base_query = QueryDict(query_string, mutable=True)
        base_query.pop("page", None)
        html = render_body(None, "leaderboard/_board.jinja", {
            "rows": rows, "page": page, "benchmarks": leaderboard_benchmarks(), "params": params,
            "sort": params.get("sort") or selectors.DEFAULT_SORT, "base_query": base_query.urlencode(),
        })
        cache.set(key, html, BOARD_CACHE_SECONDS)
    return html


@require_GET
def leaderboard(request: HttpRequest) -> HttpResponse:
    query = LeaderboardQuery(request.GET)
    if not query.is_valid():
        return _bad_request(request, query.errors)
    params = query.cleaned_data
    board = board_fragment(params, request.GET.urlencode())
    if request.htmx:
        return HttpResponse(board)
    context = {
        "board": board,
        "benchmarks": leaderboard_benchmarks(),
        "params": params,
        "choices": selectors.filter_choices(),
        "size_classes": [label for label, _ in SIZE_CLASSES],
        "sort": params.get("sort") or selectors.DEFAULT_SORT,
        "require_safety": settings.REQUIRE_SAFETY,
        "max_error_percent": f"{100 * MAX_ERROR_RATE:g}",
    }
    return render(request, "leaderboard/leaderboard.html", context)


def _bad_request(request: HttpRequest, errors: Any) -> HttpResponse:
    return render(request, "leaderboard/bad_request.html", {"errors": errors}, status=400)


@require_GET
def plots_page(request: HttpRequest) -> HttpResponse:
    key = board_cache_key("plots", "")
    context = cache.get(key)
    if context is None:  # one pass over the precomputed rows, shared for BOARD_CACHE_SECONDS
        entries = selectors.plot_entries()
        points = plots.claim_points(entries)
        gaps = plots.heldout_points(entries)
        context = {
            "claims_plot": plots.claimed_vs_measured(points) if points else "",
            "n_claims": len(points),
            "n_inconsistent": sum(1 for p in points if p.verdict == "inconsistent"),
            "gap_plot": plots.heldout_gap(gaps) if gaps else "",
            "heldout_pair": plots.HELDOUT_PAIRS[0],
        }
        cache.set(key, context, BOARD_CACHE_SECONDS)
    return render(request, "leaderboard/plots.html", context)


# --- accounts ------------------------------------------------------------------------------------


def too_many_requests(request: HttpRequest, what: str) -> HttpResponse:
    message = f"Too many {what} attempts from here; wait a while and try again."
    return render(request, "leaderboard/bad_request.html", {"errors": {what: [message]}}, status=429)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and quotas.throttled(request, "signup", settings.SIGNUP_RATE):
        return too_many_requests(request, "sign-up")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}.")
        return redirect("submit")
    context = {"form": form, "hf_oauth": oauth.enabled()}
    return render(request, "registration/signup.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None)
    new_key = None
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "leaderboard/tokens.html", {"form": form, "tokens": []}, status=400)
        new_key = form.create_token(request.user)
    tokens = selectors.tokens_of(request.user)
    return render(request, "leaderboard/tokens.html", {"form": ApiTokenForm(), "tokens": tokens, "new_key": new_key})


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    deleted, _ = ApiToken.objects.filter(pk=token_id, user=request.user).delete()
    if not deleted:
        raise Http404("No such token of yours.")
    return redirect("api_tokens")


# --- submitting ----------------------------------------------------------------------------------


@login_required
@require_GET
def owner_token(request: HttpRequest) -> HttpResponse:
    """The user's owner token and how to commit it, to prove control of a repo without OAuth."""
    context = {"token": ownership.owner_token_for(request.user), "file": ownership.OWNER_TOKEN_FILE,
               "namespaces": sorted(ownership.hub_namespaces(request.user))}
    return render(request, "leaderboard/owner_token.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def submit(request: HttpRequest) -> HttpResponse:
    client_ip = quotas.client_ip(request)
    form = SubmissionForm(request.POST or None, user=request.user, client_ip=client_ip,
                          initial={"revision": "main", "kind": SubmissionKind.AUTHOR})
    if request.method == "POST":
        if form.is_valid():
            try:
                submission = do_create_submission(request.user, form.payload or {}, client_ip,
                                                  validated=form.validated)
            except SubmissionError as exc:  # lost a race (rate limit, duplicate) since validation
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Submitted {submission.repo_id}; verification is queued.")
                return redirect("submission_status", pk=submission.pk)
        return render(request, "leaderboard/submit.html", {"form": form}, status=400)
    return render(request, "leaderboard/submit.html", {"form": form})


@login_required
@require_GET
def submit_card_claims(request: HttpRequest) -> HttpResponse:
    """htmx partial: the scores the repo's card states, offered as claims for the author to confirm."""
    repo_id = request.GET.get("repo_id", "")
    revision = request.GET.get("revision", "") or "main"
    try:
        answer = card_claims(repo_id, revision)
    except SubmissionError as exc:
        return render(request, "leaderboard/_card_claims.html", {"error": exc.message}, status=400)
    context = {"found": answer.claims, "ready": answer.ready, "busy": answer.busy, "repo_id": repo_id,
               "revision": revision}
    return render(request, "leaderboard/_card_claims.html", context, status=200 if answer.ready else 202)


@login_required
@require_GET
def my_submissions(request: HttpRequest) -> HttpResponse:
    submissions = selectors.submissions_of(request.user)
    return render(request, "leaderboard/my_submissions.html", {"submissions": submissions})


@login_required
@require_POST
def withdraw_submission(request: HttpRequest, pk: int) -> HttpResponse:
    submission = get_object_or_404(ModelSubmission, pk=pk)
    try:
        withdrawn = do_withdraw_submission(request.user, submission)
    except PermissionError as exc:
        return HttpResponse(str(exc), status=403, content_type="text/plain")
    if not withdrawn:
        return HttpResponse("Only a submission still waiting or running can be withdrawn.", status=409,
                            content_type="text/plain")
    messages.info(request, "Submission withdrawn.")
    return redirect("submission_status", pk=pk)


# --- run status ------------------------------------------------------------------------------------


def _status_context(request: HttpRequest, submission: ModelSubmission) -> dict[str, Any]:
    runs = selectors.recent_runs(submission)
    current = runs[0] if runs else None
    finished = submission.status not in PENDING_STATUSES and (
        current is None or current.status in (EvaluationRun.Status.DONE, EvaluationRun.Status.FAILED)
    )
    return {
        "submission": submission,
        "run": current,
        "runs": runs,
        "progress": selectors.benchmark_progress(current) if current else [],
        "eta": selectors.eta_seconds(current) if current else None,
        "overall_percent": int(100 * current.progress_done / current.progress_total)
        if current and current.progress_total else (100 if finished else 0),
        "finished": finished,
        "log": (current.log or [])[-50:] if current else [],
        "is_author": _is_author(request, submission),
    }


def _is_author(request: HttpRequest, submission: ModelSubmission) -> bool:
    return request.user.is_authenticated and submission.submitter_id == request.user.pk


@require_GET
def submission_status(request: HttpRequest, pk: int) -> HttpResponse:
    submission = get_object_or_404(ModelSubmission.objects.select_related("submitter"), pk=pk)
    context = _status_context(request, submission)
    context["claims"] = selectors.claims_of(submission)
    return render(request, "leaderboard/submission_status.html", context)


@require_GET
def submission_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """htmx partial polled by the status page; once finished it renders without the poll trigger."""
    submission = get_object_or_404(ModelSubmission, pk=pk)
    return render(request, "leaderboard/_progress.html", _status_context(request, submission))


# --- model page --------------------------------------------------------------------------------------


def _section_template(name: str) -> Any | None:
    try:
        return get_template(f"includes/{name}.html")
    except TemplateDoesNotExist:
        return None


def report_sections(report: dict[str, Any], request: HttpRequest | None = None) -> list[dict[str, Any]]:
    """The report's check sections, each rendered by its Django template (includes/<name>.html,
    else the generic key/value listing; "" when the report has no such section)."""
    sections = []
    for name in REPORT_SECTIONS:
        data = report.get(name)
        template = _section_template(name)
        if template is not None:
            html = template.render({"section": data, "report": report}, request)
        elif data:
            html = render_to_string("leaderboard/_section_fallback.html", {"data": data}, request)
        else:
            html = ""
        sections.append({"name": name, "data": data, "html": html})
    return sections


def reproduce_command(submission: ModelSubmission, run: EvaluationRun | None) -> str:
    """The command line that repeats this run with the CLI (same model sha, benchmarks, limit,
    backend); the claims file it needs is shown next to it."""
    parts = ["python", "manage.py", "verify", submission.repo_id]
    revision = submission.pinned_sha or submission.requested_revision
    parts += ["--revision", revision]
    if run is not None:
        slugs = [b.get("slug") or b.get("benchmark") for b in (run.benchmarks or []) if isinstance(b, dict)]
        if slugs:
            parts += ["--benchmarks", ",".join(s for s in slugs if s)]
        if run.limit:
            parts += ["--limit", str(run.limit)]
        if run.backend:
            parts += ["--backend", run.backend]
    if submission.claimed_base:
        parts += ["--base", submission.claimed_base]
    parts += ["--claims", "claims.json"]
    return shlex.join(parts)


def claims_file(submission: ModelSubmission, claims: list[dict[str, Any]]) -> str:
    """The claims file (`--claims`) of the submission, in the engine's claims-file shape, with the
    page's claim documents."""
    return json.dumps({**claims_doc(submission, claims=()).as_dict(), "claims": claims}, indent=2)


def page_status(submission: ModelSubmission, entry: Any, flags: list[Any], report: dict[str, Any]) -> dict[str, Any]:
    """The model page's headline: its state (the board's badge when the revision has a row, else
    what the submission's status amounts to) and what that state rests on: the flags that stand
    (warning or critical, open or confirmed: the badge's own rule) and the checks that did not run."""
    if entry is not None:
        state = entry.badge
    elif submission.status in PENDING_STATUSES:
        state = "pending"
    else:
        state = submission.status
    standing = [item for item in flags
                if item.flag.severity in FLAGGING_SEVERITIES and item.flag.status in BADGE_FLAG_STATES]
    missing = [m for m in report.get("missing_checks") or [] if isinstance(m, dict)]
    return {"state": state, "standing": standing, "missing": missing}


@require_GET
def model_page(request: HttpRequest, org: str, name: str) -> HttpResponse:
    repo_id = f"{org}/{name}"
    submission = selectors.model_submission(repo_id, request.GET.get("submission"))
    run = latest_finished_run(submission)
    claims = selectors.claim_documents(submission)
    rows = selectors.result_rows(run, {c["benchmark"]: c["score"] for c in claims},
                                 selectors.base_measurements(submission))
    report = submission.report or {}
    # Which flags the public sees, and in which words, is triage's rule (one place).
    flags = triage_service.public_flags_for(submission)
    entry = selectors.entry_of(submission)
    ci_rows = [plots.CiRow(r.benchmark, r.measured, r.ci_low, r.ci_high, r.benchmark_claim, r.base_measured)
               for r in rows]
    safety = safety_profile(report, xstest_metrics(rows), flags)
    context = {
        "submission": submission,
        "repo_id": repo_id,
        "entry": entry,
        "unlisted_reason": unlisted_reason(entry),
        "run": run,
        "rows": rows,
        "flags": flags,
        "page_status": page_status(submission, entry, flags, report),
        "safety": safety,
        "safety_html": render_to_string("includes/safety.html", {"safety": safety}, request),
        # The submission's author, and the repo's owner on a community verification's flags.
        "is_author": _is_author(request, submission) or ownership.is_repo_owner(request.user, repo_id),
        "is_community": submission.kind == ModelSubmission.Kind.COMMUNITY,
        "sections": report_sections(report, request),
        "rescore_logs": list(submission.rescore_logs.all()[:20]),
        "ci_plot": plots.model_ci_chart(ci_rows, f"{repo_id}: measured vs claimed") if ci_rows else "",
        "public_benchmarks": sorted({r.benchmark for r in rows if not r.private}),
        "heldout_figure": plots.contamination_heldout_figure(report.get("contamination")),
        "reproduce": reproduce_command(submission, run),
        "claims_json": claims_file(submission, claims),
    }
    extra_head = format_html(
        '<script src="{}"></script>\n<link rel="alternate" type="application/atom+xml" title="Flags on {}" href="/models/{}/flags.atom">',
        static("plotly/plotly.min.js"), repo_id, repo_id)
    return render_page(request, "leaderboard/model.jinja", context, title=repo_id, extra_head=extra_head)


@require_GET
def model_history(request: HttpRequest, org: str, name: str) -> HttpResponse:
    """The repository's submissions, community verifications and runs: the History fold of a
    model page, fetched when it opens (a page of its own without htmx)."""
    repo_id = f"{org}/{name}"
    submission = selectors.model_submission(repo_id, request.GET.get("submission"))
    context = {"repo_id": repo_id, "shown_pk": submission.pk, "history": selectors.repo_history(repo_id),
               "runs": selectors.repo_runs(repo_id)}
    if request.htmx:
        return HttpResponse(render_body(request, "leaderboard/model/history.jinja", context))
    return render_page(request, "leaderboard/model/history.jinja", {**context, "standalone": True},
                       title=f"{repo_id}: history")


@require_GET
def model_samples(request: HttpRequest, org: str, name: str) -> HttpResponse:
    """Per-item explorer (htmx partial) for PUBLIC benchmarks; a private benchmark's items are
    never read, only its aggregates are shown on the page."""
    query = SampleQuery(request.GET)
    if not query.is_valid():
        return _bad_request(request, query.errors)
    params = query.cleaned_data
    submission = get_object_or_404(ModelSubmission, pk=params["submission"], repo_id=f"{org}/{name}")
    result, page = selectors.sample_page(submission, params["benchmark"], params.get("show") or "",
                                         params.get("page") or 1)
    if page is None:
        return render(request, "leaderboard/_samples.html", {"private": True, "result": result}, status=403)
    context = {"page": page, "result": result, "params": params, "org": org, "name": name}
    return render(request, "leaderboard/_samples.html", context)


class LoginView(auth_views.LoginView):
    """Django's login, throttled per client address and per username, plus the "Sign in with
    Hugging Face" link when OAuth is configured."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        over_ip = quotas.throttled(request, "login", settings.LOGIN_RATE)
        over_user = quotas.throttled(request, "login-user", settings.LOGIN_RATE, key="post:username")
        if over_ip or over_user:
            return too_many_requests(request, "login")
        return super().post(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["hf_oauth"] = oauth.enabled()
        return context
