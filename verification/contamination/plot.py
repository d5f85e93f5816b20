"""Plotly-ready data for the "public vs held-out" chart (the site draws it with plotly.js).

One group of bars per (public, held-out) pair: the submitted model's accuracy on the public set
and on the held-out set, and the same two for the claimed base when it was measured; error bars
are ±1.96·SE. Private sets appear under their slug with aggregates only (that is all the section
holds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Z95 = 1.959963984540054


def _points(proportion: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    if not proportion or not proportion.get("n"):
        return None, None
    p = float(proportion["p"])
    n = int(proportion["n"])
    return 100.0 * p, 100.0 * Z95 * math.sqrt(max(p * (1 - p), 0.25 / n / n) / n)


def public_vs_heldout_plot(section: Mapping[str, Any]) -> dict[str, Any] | None:
    """{"data": [...traces], "layout": {...}} for plotly, or None when no pair was measured."""
    pairs = (section.get("methods", {}).get("heldout_gap", {}) or {}).get("pairs", [])
    if not pairs:
        return None
    labels = [f"{pair['public']} vs {pair['heldout']}" for pair in pairs]
    traces = []
    series = (
        ("model", "public", "Submitted model: public", "#1f77b4"),
        ("model", "heldout", "Submitted model: held-out", "#aec7e8"),
        ("base", "public", "Claimed base: public", "#7f7f7f"),
        ("base", "heldout", "Claimed base: held-out", "#c7c7c7"),
    )
    for who, side, name, colour in series:
        values, errors = [], []
        for pair in pairs:
            gap = pair.get(who)
            value, error = _points(gap.get(side) if gap else None)
            values.append(value)
            errors.append(error)
        if all(v is None for v in values):
            continue
        traces.append({
            "type": "bar",
            "name": name,
            "x": labels,
            "y": values,
            "error_y": {"type": "data", "array": errors, "visible": True},
            "marker": {"color": colour},
        })
    return {
        "data": traces,
        "layout": {
            "barmode": "group",
            "title": {"text": "Public benchmark vs held-out accuracy"},
            "yaxis": {"title": {"text": "accuracy (%)"}, "range": [0, 100]},
            "legend": {"orientation": "h"},
        },
    }
