"""Plotly figures for the site, rendered as HTML fragments. plotly.min.js itself is served as a
static file (no CDN), so fragments never embed the library."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

# Public benchmark vs its held-out twin (fresh GSM-style problems): the gap is contamination evidence.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (("gsm8k", "gsm_fresh"),)
_FLAG_VERDICTS = {"inconsistent", "discrepant"}
_CONFIG = {"displaylogo": False, "responsive": True}
# The site's series colours (Okabe–Ito: told apart with the common colour-vision deficiencies); the
# same values are site.css's --measured / --claimed / --base, so a chart and its page agree.
SERIES_COLOURS = {"measured": "#0072b2", "claimed": "#d55e00", "base": "#6b6b6b", "diagonal": "#888888"}
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 14, "color": "#1d2125"}


@functools.cache
def _template() -> dict:
    """plotly_white as the JSON plotly.js reads, built once per process."""
    return pio.templates["plotly_white"].to_plotly_json()


def to_fragment(figure: "go.Figure | dict[str, Any]", div_id: str, height: int = 420) -> str:
    """The figure as an HTML fragment with the site's layout. The layout is set on the figure's
    JSON rather than through update_layout: assigning the template there re-validates and
    deep-copies all of it on every call, which was most of a model page's cost."""
    spec = figure.to_dict() if isinstance(figure, go.Figure) else figure
    layout = spec.setdefault("layout", {})
    settings = {"margin": {"l": 60, "r": 20, "t": 50, "b": 60}, "font": _FONT,
                "legend": {"orientation": "h", "yanchor": "top", "y": -0.14, "x": 0}}
    for key, value in settings.items():
        layout[key] = {**layout.get(key, {}), **value}
    layout.update(height=height, template=_template())
    return pio.to_html(spec, validate=False, full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG)


@dataclass(frozen=True)
class ClaimPoint:
    model: str
    benchmark: str
    claimed: float
    measured: float
    verdict: str


def claim_points(entries: Iterable[dict]) -> list[ClaimPoint]:
    """(claimed, measured) pairs from precomputed leaderboard rows (repo_id, scores, claimed, verdicts)."""
    points = []
    for entry in entries:
        for slug, claimed in (entry.get("claimed") or {}).items():
            measured = (entry.get("scores") or {}).get(slug)
            if measured is None or claimed is None:
                continue
            verdict = (entry.get("verdicts") or {}).get(slug, "")
            points.append(ClaimPoint(entry["repo_id"], slug, float(claimed), float(measured), verdict))
    return points


def claimed_vs_measured(points: Sequence[ClaimPoint]) -> str:
    """Every claim against its re-measurement; the diagonal is "claim = measurement"; claims the
    measurement contradicts are drawn as red crosses."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(x=[0, 100], y=[0, 100], mode="lines", name="claimed = measured",
                   line={"dash": "dash", "color": SERIES_COLOURS["diagonal"]}, hoverinfo="skip")
    )
    for label, keep, marker in (
        ("consistent", lambda p: p.verdict not in _FLAG_VERDICTS, {"color": SERIES_COLOURS["measured"], "size": 8}),
        ("inconsistent / discrepant", lambda p: p.verdict in _FLAG_VERDICTS,
         {"color": SERIES_COLOURS["claimed"], "size": 11, "symbol": "x"}),
    ):
        chosen = [p for p in points if keep(p)]
        figure.add_trace(
            go.Scatter(
                x=[p.claimed for p in chosen], y=[p.measured for p in chosen], mode="markers", name=label,
                marker=marker, text=[f"{p.model} · {p.benchmark} · {p.verdict or 'unrated'}" for p in chosen],
                hovertemplate="%{text}<br>claimed %{x:.1f}, measured %{y:.1f}<extra></extra>",
            )
        )
    figure.update_layout(
        title="Claimed vs measured (all models)", xaxis={"title": "claimed", "range": [0, 100]},
        yaxis={"title": "measured", "range": [0, 100]},
    )
    return to_fragment(figure, "plot-claimed-vs-measured")


@dataclass(frozen=True)
class CiRow:
    benchmark: str
    measured: float
    ci_low: float
    ci_high: float
    claimed: float | None
    base_measured: float | None = None


def model_ci_chart(rows: Sequence[CiRow], title: str) -> str:
    """Measured score with its 95% interval per benchmark, the claim as a marker, and the claimed
    base's measurement for the uplift. Built as plain plotly JSON, not graph objects: validating
    graph objects cost a model page more than all its queries."""
    traces: list[dict[str, Any]] = [{
        "type": "scatter", "x": [row.benchmark for row in rows], "y": [row.measured for row in rows],
        "mode": "markers", "name": "measured (95% CI)",
        "marker": {"size": 11, "color": SERIES_COLOURS["measured"]},
        "error_y": {
            "type": "data", "symmetric": False,
            "array": [row.ci_high - row.measured for row in rows],
            "arrayminus": [row.measured - row.ci_low for row in rows],
        },
    }]
    claimed = [row for row in rows if row.claimed is not None]
    if claimed:
        traces.append({
            "type": "scatter", "x": [r.benchmark for r in claimed], "y": [r.claimed for r in claimed],
            "mode": "markers", "name": "claimed",
            "marker": {"size": 13, "symbol": "diamond-open", "color": SERIES_COLOURS["claimed"], "line": {"width": 2}},
        })
    based = [row for row in rows if row.base_measured is not None]
    if based:
        traces.append({
            "type": "scatter", "x": [r.benchmark for r in based], "y": [r.base_measured for r in based],
            "mode": "markers", "name": "claimed base (measured)",
            "marker": {"size": 10, "symbol": "square", "color": SERIES_COLOURS["base"]},
        })
    layout = {"title": {"text": title, "font": {"size": 15}},
              "yaxis": {"title": {"text": "score (points, 0–100)"}, "range": [0, 100]}}
    return to_fragment({"data": traces, "layout": layout}, "plot-model-ci", height=380)


@dataclass(frozen=True)
class GapPoint:
    model: str
    public: float
    heldout: float


def heldout_points(entries: Iterable[dict]) -> list[GapPoint]:
    points = []
    for entry in entries:
        scores = entry.get("scores") or {}
        for public, heldout in HELDOUT_PAIRS:
            if public in scores and heldout in scores:
                points.append(GapPoint(entry["repo_id"], float(scores[public]), float(scores[heldout])))
    return points


def heldout_gap(points: Sequence[GapPoint]) -> str:
    """Public GSM8K accuracy against fresh held-out problems of the same kind: a model far below
    the diagonal does much better on the public items it may have seen."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 100], y=[0, 100], mode="lines", name="no gap",
                                line={"dash": "dash", "color": SERIES_COLOURS["diagonal"]}, hoverinfo="skip"))
    figure.add_trace(
        go.Scatter(
            x=[p.public for p in points], y=[p.heldout for p in points], mode="markers", name="models",
            text=[f"{p.model}: gap {p.public - p.heldout:+.1f}" for p in points],
            hovertemplate="%{text}<extra></extra>", marker={"size": 9, "color": SERIES_COLOURS["measured"]},
        )
    )
    public, heldout = HELDOUT_PAIRS[0]
    figure.update_layout(title=f"Public vs held-out ({public} vs {heldout})",
                         xaxis={"title": f"{public} (public)", "range": [0, 100]},
                         yaxis={"title": f"{heldout} (held-out)", "range": [0, 100]})
    return to_fragment(figure, "plot-heldout-gap")


def contamination_heldout_figure(section: dict | None) -> dict | None:
    """Plotly data for the contamination section's "public vs held-out" chart (per model, with
    the claimed base), drawn by the model page into #contamination-heldout-plot."""
    if not isinstance(section, dict):
        return None
    from verification.contamination.plot import public_vs_heldout_plot

    try:
        return public_vs_heldout_plot(section)
    except (KeyError, TypeError, ValueError):  # a section from an older report shape: no chart
        return None
