"""The badge snippet's absolute URLs (settings.SITE_URL, else the request's host)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from leaderboard.views_badge import site_url

register = template.Library()


@register.simple_tag(takes_context=True)
def badge_urls(context: Any, repo_id: str) -> dict[str, str]:
    org, _, name = repo_id.partition("/")
    request = context["request"]
    return {
        "badge": site_url(request, reverse("badge", kwargs={"org": org, "name": name})),
        "page": site_url(request, reverse("model", kwargs={"org": org, "name": name})),
    }
