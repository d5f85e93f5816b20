"""Small template helpers for the public site."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """mapping[key] in a template, None when absent (Django templates cannot index by variable)."""
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None


@register.filter
def points(value: Any) -> str:
    """A score in points with one decimal, or an em dash when not measured."""
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def signed(value: Any) -> str:
    if value is None:
        return "—"
    return f"{float(value):+.1f}"


@register.filter
def flag_state(status: str) -> str:
    """The public wording of a flag's state."""
    return {"open": "under review"}.get(status, status)


@register.simple_tag(takes_context=True)
def sort_link(context: Any, column: str) -> str:
    """?sort= value for a column header: descending first, toggling when already sorted on it."""
    current = context.get("sort") or "-average"
    if current == f"-{column}":
        return column
    return f"-{column}"
