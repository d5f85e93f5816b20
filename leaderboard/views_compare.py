"""The compare page: models side by side with the paired difference (services/compare.py holds
the rules; this view only translates HTTP)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from leaderboard.jinja import render_page
from leaderboard.services import compare


@require_GET
def compare_page(request: HttpRequest) -> HttpResponse:
    try:
        repo_ids = compare.check_compare_models(request.GET.get("models"))
        comparison = compare.compare_models(repo_ids)
    except compare.CompareError as error:
        return render(request, "leaderboard/bad_request.html", {"errors": {"models": [str(error)]}},
                      status=error.status)
    models_param = ",".join(repo_ids)
    context = {"comparison": comparison, "models_param": models_param}
    return render_page(request, "leaderboard/compare.jinja", context, title=f"Compare {models_param}")
