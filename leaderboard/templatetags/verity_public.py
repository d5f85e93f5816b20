"""Template filters for text that reaches the public."""

from __future__ import annotations

import json
from typing import Any

from django import template

from leaderboard.services import public_text
from leaderboard.services.public_text import scrub_internal

register = template.Library()


@register.filter
def scrubbed(value: str | None) -> str:
    """The text without the machine's internal paths (see services.public_text)."""
    return scrub_internal(value)


@register.filter
def public_details(details: Any) -> list[tuple[str, str]]:
    """A sample's details as (key, text) pairs, without the private keys and the machine's paths
    (services.public_text)."""
    shown = public_text.public_details(details or {})
    if not isinstance(shown, dict):
        return []
    return [(key, scrub_internal(value if isinstance(value, str) else json.dumps(value, default=str)))
            for key, value in sorted(shown.items())]
