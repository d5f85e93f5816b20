"""Small template helpers for the public site."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


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


@register.simple_tag(takes_context=True)
def sort_link(context: Any, column: str) -> str:
    """?sort= value for a column header: descending first, toggling when already sorted on it."""
    current = context.get("sort") or "-average"
    if current == f"-{column}":
        return column
    return f"-{column}"


@register.filter
def pvalue(value: Any) -> str:
    """A p-value with two significant digits (small ones in scientific notation)."""
    if not isinstance(value, (int, float)):
        return "—"
    return f"{float(value):.2g}"
