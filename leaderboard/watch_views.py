"""Following a model: the watch toggle on a model page and the user's list of watched models
(the e-mails they bring are sent by leaderboard.services.notifications)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from leaderboard.services.watch import WatchError, do_toggle_watch, watched_models


@login_required
@require_POST
def toggle_watch(request: HttpRequest, org: str, name: str) -> HttpResponse:
    """Watch the model, or stop watching it (POST, CSRF-checked), then back to its page."""
    try:
        watching = do_toggle_watch(request.user, f"{org}/{name}")
    except WatchError as exc:
        raise Http404(str(exc)) from None
    messages.info(request, f"Watching {org}/{name}." if watching else f"No longer watching {org}/{name}.")
    return redirect("model", org=org, name=name)


@login_required
@require_GET
def watched(request: HttpRequest) -> HttpResponse:
    return render(request, "leaderboard/watched.html", {"watched": watched_models(request.user)})
