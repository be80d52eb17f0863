"""Charts of a system's month, drawn with matplotlib (Agg, no display) as PNG bytes.

``Figure`` objects are made directly (not through pyplot), so nothing global is kept
and charts can be drawn from any thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._model import SystemFigures

__all__ = ["Chart", "system_charts"]

_ACTION_COLOURS = {"allow": "#9bbf85", "flag": "#f2c14e", "redact": "#5b8fd6", "block": "#d9534f", "escalate": "#8e5ea2"}
_DPI = 110


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    alt: str  # what the chart shows, for screen readers and the Markdown link
    png: bytes
    name: str  # short, file-name safe


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _volume(f: SystemFigures) -> Chart:
    figure = Figure(figsize=(7.5, 2.8))
    axes = figure.add_subplot()
    days = [d.day[8:] for d in f.days]
    axes.bar(days, [d.requests - d.failed for d in f.days], color="#5b8fd6", label="served")
    axes.bar(days, [d.failed for d in f.days], bottom=[d.requests - d.failed for d in f.days], color="#d9534f", label="failed")
    axes.set_ylabel("requests")
    axes.set_xlabel("day")
    axes.tick_params(axis="x", labelsize=7)
    availability = axes.twinx()
    availability.plot(days, [100 * (1 - d.failed / d.requests) for d in f.days], color="#222222", marker=".", label="availability")
    availability.set_ylabel("availability %")
    axes.legend(loc="lower left", fontsize=7)
    return Chart("Requests and availability per day", f"{f.system}: daily requests, failures and availability", _png(figure), "volume")


def _latency(f: SystemFigures) -> Chart:
    figure = Figure(figsize=(7.5, 2.6))
    axes = figure.add_subplot()
    days = [d.day[8:] for d in f.days]
    axes.plot(days, [d.latency_p50_ms or 0 for d in f.days], marker=".", label="p50")
    axes.plot(days, [d.latency_p95_ms or 0 for d in f.days], marker=".", label="p95")
    axes.set_ylabel("ms")
    axes.set_xlabel("day")
    axes.tick_params(axis="x", labelsize=7)
    axes.legend(fontsize=7)
    return Chart("Latency per day (p50, p95)", f"{f.system}: daily p50 and p95 request duration in milliseconds", _png(figure), "latency")


def _decisions(f: SystemFigures) -> Chart:
    figure = Figure(figsize=(7.5, 0.6 + 0.35 * max(len(f.checks), 2)))
    axes = figure.add_subplot()
    labels = [f"{c.check} ({c.stage})" for c in f.checks]
    left = [0.0] * len(f.checks)
    for action, colour in _ACTION_COLOURS.items():
        widths = [100 * c.actions.get(action, 0) / c.runs if c.runs else 0 for c in f.checks]
        if any(widths):
            axes.barh(labels, widths, left=left, color=colour, label=action)
            left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.set_xlim(0, 100)
    axes.set_xlabel("share of the check's decisions (%)")
    axes.invert_yaxis()
    axes.legend(fontsize=7, ncols=5, loc="lower right")
    return Chart("Check decisions by action", f"{f.system}: decisions of each check by action", _png(figure), "decisions")


def _pii(f: SystemFigures) -> Chart:
    entities = sorted({e for stage in f.pii_findings.values() for e in stage})
    figure = Figure(figsize=(7.5, 0.6 + 0.3 * max(len(entities), 2)))
    axes = figure.add_subplot()
    left = [0] * len(entities)
    for stage, colour in (("input", "#5b8fd6"), ("output", "#d9534f")):
        widths = [f.pii_findings.get(stage, {}).get(e, 0) for e in entities]
        axes.barh(entities, widths, left=left, color=colour, label=f"{stage}{' (leaked or caught)' if stage == 'output' else ''}")
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.set_xlabel("findings")
    axes.invert_yaxis()
    axes.legend(fontsize=7)
    return Chart("Personal data found, by entity type", f"{f.system}: personal-data findings by entity type and stage", _png(figure), "pii")


def _bias(f: SystemFigures) -> Chart:
    figure = Figure(figsize=(7.5, 2.6))
    axes = figure.add_subplot()
    labels, values, colours = [], [], []
    for bias in f.bias:
        for group, rate in sorted(bias.last_selection_rates.items()):
            labels.append(f"{bias.feature}={group}")
            values.append(rate)
            colours.append("#d9534f" if bias.breaches else "#5b8fd6")
    axes.bar(labels, values, color=colours)
    axes.set_ylabel("selection rate")
    axes.set_ylim(0, 1)
    axes.tick_params(axis="x", labelsize=7, rotation=20)
    return Chart("Selection rate per group (last evaluation)", f"{f.system}: selection rate per group, red where a threshold was breached", _png(figure), "bias")


def system_charts(f: SystemFigures) -> list[Chart]:
    charts = []
    if f.days:
        charts += [_volume(f), _latency(f)]
    if f.checks:
        charts.append(_decisions(f))
    if f.pii_findings:
        charts.append(_pii(f))
    if any(b.last_selection_rates for b in f.bias):
        charts.append(_bias(f))
    return charts
