"""Write a monthly report in one of its formats."""

from __future__ import annotations

import enum
from pathlib import Path

from ._document import Document, report_document
from ._model import MonthlyReport
from ._render import render_html, render_markdown, render_pdf

__all__ = ["ReportFormat", "write_document", "write_report"]


class ReportFormat(str, enum.Enum):
    HTML = "html"
    MD = "md"
    PDF = "pdf"
    JSON = "json"


def write_document(doc: Document, fmt: ReportFormat, output: Path) -> list[Path]:
    """Write a Document (html, md or pdf); return the files written (Markdown's charts too)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt is ReportFormat.HTML:
        output.write_text(render_html(doc), encoding="utf-8")
        return [output]
    if fmt is ReportFormat.PDF:
        output.write_bytes(render_pdf(doc))
        return [output]
    if fmt is ReportFormat.MD:
        text, charts = render_markdown(doc, f"{output.stem}_charts")
        written = [output]
        for name, png in charts.items():
            path = output.parent / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            written.append(path)
        output.write_text(text, encoding="utf-8")
        return written
    raise ValueError(f"a document cannot be written as {fmt.value}")


def write_report(report: MonthlyReport, fmt: ReportFormat, output: Path) -> list[Path]:
    """Write ``report`` to ``output``; JSON is the data model itself, the others its document."""
    if fmt is ReportFormat.JSON:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report.model_dump_json(indent=2), encoding="utf-8")
        return [output]
    return write_document(report_document(report), fmt, output)
