"""The monthly measurement report (ISO/IEC 42001 9.1), built from the event log.

``build_monthly_report`` streams the events once into per-system figures, scores the
policy's objectives (this month and the previous one) and returns a ``MonthlyReport``
(pydantic: the JSON format); ``write_report`` renders it as HTML, Markdown or PDF.
"""

from ._aggregate import MonthAggregator
from ._build import PolicyView, build_monthly_report, month_bounds, previous_month
from ._document import Document, Figure, Paragraph, Section, Table, report_document
from ._model import (
    BiasFigures,
    CheckFigures,
    DayFigures,
    EffectivenessFigures,
    HandoffFigures,
    IncidentFigures,
    IncidentLine,
    KeyFigures,
    MonthlyReport,
    ObjectiveResult,
    PolicyChange,
    PolicyEvidence,
    ReviewerFigures,
    SystemFigures,
    SystemReport,
)
from ._objectives import METRICS, score_objectives
from ._render import render_html, render_markdown, render_pdf
from ._source import read_report_events
from ._write import ReportFormat, write_document, write_report

__all__ = [
    "BiasFigures",
    "CheckFigures",
    "DayFigures",
    "Document",
    "EffectivenessFigures",
    "Figure",
    "HandoffFigures",
    "IncidentFigures",
    "IncidentLine",
    "KeyFigures",
    "METRICS",
    "MonthAggregator",
    "MonthlyReport",
    "ObjectiveResult",
    "Paragraph",
    "PolicyChange",
    "PolicyEvidence",
    "PolicyView",
    "ReportFormat",
    "ReviewerFigures",
    "Section",
    "SystemFigures",
    "SystemReport",
    "Table",
    "build_monthly_report",
    "month_bounds",
    "previous_month",
    "read_report_events",
    "render_html",
    "render_markdown",
    "render_pdf",
    "report_document",
    "score_objectives",
    "write_document",
    "write_report",
]
