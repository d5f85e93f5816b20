"""Jinja2 for the site's heaviest pages (the board's rows, a model's page, compare).

Django templates cost several microseconds per variable and tag; a model page has about 600 of
them and the board's 50 rows about 2,000, which made template rendering the largest part of
these pages' CPU time. Jinja2 compiles a template to Python and renders the same markup about
six times faster. These templates are named *.jinja and are read only through `engines["jinja2"]`
(render_body / render_page below), never by Django's template lookup; every other page, and the
site's frame (base.html), stay Django templates. The filters are the Django templates' own (one
definition each)."""

from __future__ import annotations

from typing import Any

from collections.abc import Mapping

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import defaultfilters, engines
from django.templatetags.static import static
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import template_localtime
from jinja2 import Environment

from leaderboard.services.watch import is_watching
from leaderboard.templatetags.verity_site import points, pvalue, signed
from leaderboard.views_badge import badge_urls


def url(name: str, *args: Any) -> str:
    return reverse(name, args=args)


def items(value: Any) -> list[tuple[Any, Any]]:
    """A mapping's items, and nothing for anything else: the engine's JSON (evidence, setup,
    versions) is shown as it is, whatever shape it has."""
    return list(value.items()) if isinstance(value, Mapping) else []


def head(value: Any, length: int) -> str:
    """The first `length` characters ("" for nothing)."""
    return "" if value is None else str(value)[:length]


def date(value: Any, format_string: str) -> str:
    """Django's date filter, in the site's time zone as Django templates show it."""
    return defaultfilters.date(template_localtime(value), format_string) if value else ""


def environment(**options: Any) -> Environment:
    env = Environment(**options)
    env.filters.update(
        points=points, signed=signed, pvalue=pvalue, items=items, head=head, date=date,
        floatformat=defaultfilters.floatformat, capfirst=defaultfilters.capfirst,
        pluralize=defaultfilters.pluralize, truncatechars=defaultfilters.truncatechars,
        json_script=defaultfilters.json_script,
    )
    env.globals.update(url=url, static=static, is_watching=is_watching, badge_urls=badge_urls)
    return env


def render_body(request: HttpRequest | None, template_name: str, context: dict[str, Any]) -> SafeString:
    """A *.jinja template rendered to safe markup (its variables are escaped by Jinja2)."""
    html = engines["jinja2"].get_template(template_name).render(context, request)
    return mark_safe(html)  # noqa: S308 - autoescaped by the Jinja2 engine


def render_page(request: HttpRequest, template_name: str, context: dict[str, Any], *, title: str,
                extra_head: str = "", status: int = 200) -> HttpResponse:
    """A page whose content is the *.jinja template, inside the site's frame (base.html)."""
    frame = {"title": title, "extra_head": mark_safe(extra_head),  # noqa: S308 - the caller's own markup
             "body": render_body(request, template_name, context)}
    return render(request, "leaderboard/_jinja_frame.html", frame, status=status)
