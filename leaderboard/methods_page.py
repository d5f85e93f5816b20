"""The site's methods page: verification/METHODS_VERDICTS.md (the one document of how verdicts,
statuses and flags are decided, with each check's measured false-positive and detection rates)
rendered to HTML once per process. The document is ours, but raw HTML in it is still not passed
through: markdown-it escapes it."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

METHODS_DOCUMENT = Path(__file__).resolve().parent.parent / "verification" / "METHODS_VERDICTS.md"


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@lru_cache(maxsize=1)
def methods_html() -> tuple[SafeString, tuple[tuple[str, str], ...]]:
    """(the document as HTML, its (anchor, title) table of contents); headings get ids."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(METHODS_DOCUMENT.read_text(encoding="utf-8"))
    contents = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag in ("h2", "h3"):
            title = tokens[index + 1].content
            anchor = _anchor(title)
            token.attrSet("id", anchor)
            if token.tag == "h2":
                contents.append((anchor, title))
    html = md.renderer.render(tokens, md.options, {})
    # The page has its own <h1>; the document's title line would be a second one.
    html = re.sub(r"<h1>.*?</h1>\n?", "", html, count=1, flags=re.S)
    return mark_safe(html), tuple(contents)


def methods_page(request: HttpRequest) -> HttpResponse:
    html, contents = methods_html()
    return render(request, "leaderboard/methods.html", {"document": html, "contents": contents})
