"""The model-card badge: /badge/<org>/<name>.svg (SVG drawing in leaderboard/badges.py)."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

from leaderboard import badges, selectors
from leaderboard.services.leaderboard import badge_for

BADGE_MAX_AGE_S = 300
SVG_CONTENT_TYPE = "image/svg+xml; charset=utf-8"


def site_url(request: HttpRequest, path: str) -> str:
    """`path` as an absolute URL: under settings.SITE_URL when set, else this request's host."""
    return settings.SITE_URL + path if settings.SITE_URL else request.build_absolute_uri(path)


def badge_urls(request: HttpRequest, repo_id: str) -> dict[str, str]:
    """The badge's and the model page's absolute URLs, for the snippet a model card embeds."""
    org, _, name = repo_id.partition("/")
    return {
        "badge": site_url(request, reverse("badge", kwargs={"org": org, "name": name})),
        "page": site_url(request, reverse("model", kwargs={"org": org, "name": name})),
    }


def model_badge(org: str, name: str, request: HttpRequest) -> tuple[badges.Badge, int]:
    try:
        submission = selectors.model_submission(f"{org}/{name}")
    except Http404:
        return badges.Badge("not found"), 404
    link = site_url(request, reverse("model", kwargs={"org": org, "name": name}))
    entry = selectors.entry_of(submission)
    if entry is None:
        return badges.Badge(badge_for(submission), link=link), 200
    return badges.Badge(entry.badge, entry.average, entry.complete, link), 200


# Embedded in model cards (<img>, or <object> so that its link works): framing is the point.
@xframe_options_exempt
@require_GET
def badge_svg(request: HttpRequest, org: str, name: str) -> HttpResponse:
    badge, status = model_badge(org, name, request)
    svg = badges.render_svg(badge)
    etag = badges.etag_of(svg)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={BADGE_MAX_AGE_S}"}
    if status == 200 and etag in request.headers.get("If-None-Match", ""):
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(svg, content_type=SVG_CONTENT_TYPE, status=status)
        # An SVG opened on its own is a document: no script may run in it, whatever it holds.
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    for key, value in headers.items():
        response[key] = value
    return response
