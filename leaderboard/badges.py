"""Shields-style SVG badges for model cards: "Verity | verified · avg 63.2", linked to the model page.

Every piece of text and the link are XML-escaped (a repo id is data, never markup), and widths
come from a per-character estimate of Verdana 11px (what shields.io measures with), so a badge
needs no font metrics at request time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

LABEL = "Verity"
# Colour-blind-safe (Okabe–Ito hues, darkened so white text keeps a 4.5:1 contrast).
STATUS_COLOURS = {
    "verified": "#006f8f",
    "flagged": "#b34700",
    "incomplete": "#6b5b00",
    "pending": "#5f5f5f",
    "not found": "#5f5f5f",
}
# Verdana 11px advance widths in px, rounded; anything else counts as a wide glyph.
_NARROW = set("fijlrtI.,:;!|'() ")
_WIDE = set("mwMW@%")
PADDING = 6
MAX_TEXT_CHARS = 60


def text_width(text: str) -> int:
    width = 0.0
    for char in text:
        width += 3.6 if char in _NARROW else 10.0 if char in _WIDE else 7.0
    return int(round(width))


@dataclass(frozen=True)
class Badge:
    status: str  # verified / flagged / incomplete / pending / not found
    average: float | None = None
    complete: bool = False
    link: str = ""

    def message(self) -> str:
        if self.average is None:
            return self.status
        return f"{self.status} · {'avg' if self.complete else 'partial avg'} {self.average:.1f}"

    def title(self) -> str:
        detail = "" if self.average is None else (
            f", average {self.average:.1f} over the full standard set" if self.complete
            else f", partial average {self.average:.1f} (not every standard benchmark measured)"
        )
        return f"{LABEL}: {self.status}{detail}"


def render_svg(badge: Badge) -> str:
    """The badge as a standalone SVG document."""
    label, message = LABEL, badge.message()[:MAX_TEXT_CHARS]
    colour = STATUS_COLOURS.get(badge.status, STATUS_COLOURS["pending"])
    left = text_width(label) + 2 * PADDING
    right = text_width(message) + 2 * PADDING
    total = left + right
    title = escape(badge.title()[:200])
    body = (
        f'<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        f'<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{total}" height="20" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{escape(label)}</text>'
        f'<text x="{left / 2:.1f}" y="14">{escape(label)}</text>'
        f'<text x="{left + right / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{escape(message)}</text>'
        f'<text x="{left + right / 2:.1f}" y="14" class="message">{escape(message)}</text></g>'
    )
    if badge.link:
        link = quoteattr(badge.link)
        body = f'<a href={link} xlink:href={link} target="_top">{body}</a>'
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="{total}" '
        f'height="20" role="img" aria-label={quoteattr(badge.title()[:200])}><title>{title}</title>{body}</svg>'
    )


def etag_of(svg: str) -> str:
    return '"' + hashlib.sha256(svg.encode("utf-8")).hexdigest()[:32] + '"'
