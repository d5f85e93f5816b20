"""`{% watching repo_id as name %}`: whether the signed-in user watches the model (the follow box
on a model page)."""

from __future__ import annotations

from typing import Any

from django import template

from leaderboard.services.watch import is_watching

register = template.Library()


@register.simple_tag(takes_context=True)
def watching(context: dict[str, Any], repo_id: str) -> bool:
    request = context.get("request")
    return is_watching(getattr(request, "user", None), repo_id)
