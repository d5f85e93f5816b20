"""Render templates/includes/endpoint.html the way the model page includes it."""

from __future__ import annotations

from typing import Any


def render_endpoint(section: dict[str, Any] | None) -> str:
    from django.template.loader import render_to_string

    return render_to_string("includes/endpoint.html", {"section": section})
