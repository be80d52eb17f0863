"""Render a Document as HTML (one self-contained file), Markdown (+ chart PNGs) or PDF.

HTML and Markdown come from the Jinja2 templates in ``templates/``; the PDF is written
with fpdf2 from the same blocks (tables, chart PNGs), in DejaVu Sans, the font matplotlib
ships, so any character the HTML shows the PDF shows too.
"""

from __future__ import annotations

import base64
import functools
import io
from pathlib import Path

import jinja2
import matplotlib
from fpdf import FPDF, FontFace
from fpdf.enums import TableCellFillMode

from aimsguard.collectors._version import __version__

from ._charts import Chart
from ._document import Document, Figure, Paragraph, Table

__all__ = ["render_html", "render_markdown", "render_pdf"]

_TONE_FILL = {"good": (223, 240, 216), "bad": (249, 224, 224), "muted": (245, 245, 245)}


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _md_cell(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


@functools.cache
def _environment(markdown: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aimsguard.collectors.report", "templates"),
        autoescape=not markdown,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["data_uri"] = _data_uri
    env.filters["md"] = _md_cell
    return env


def render_html(doc: Document) -> str:
    """One HTML file: styles inline, charts as data: URIs, nothing fetched."""
    return _environment(False).get_template("document.html.j2").render(doc=doc, version=__version__)


def render_markdown(doc: Document, chart_dir: str) -> tuple[str, dict[str, bytes]]:
    """The Markdown text and the chart files it links to (``chart_dir/NN-name.png``)."""
    names = {id(chart): f"{chart_dir}/{index:02d}-{chart.name}.png" for index, chart in enumerate(doc.charts, 1)}
    files = {names[id(chart)]: chart.png for chart in doc.charts}

    def chart_path(chart: Chart) -> str:
        return names[id(chart)]

    text = _environment(True).get_template("document.md.j2").render(doc=doc, version=__version__, chart_path=chart_path)
    return text, files


class _Pdf(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        self.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.add_font("DejaVu", "I", str(fonts / "DejaVuSans-Oblique.ttf"))
        self.set_title(title)
        self.set_creator(f"aimsguard {__version__}")
        self.set_auto_page_break(True, margin=15)
        self.doc_title = title

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", "", 7)
        self.set_text_color(120, 120, 120)
        self.cell(0, 6, f"{self.doc_title} · page {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def _pdf_table(pdf: _Pdf, table: Table) -> None:
    size = 8 if len(table.columns) <= 6 else 6.5
    pdf.set_font("DejaVu", "", size)
    heading = FontFace(emphasis="BOLD", fill_color=(238, 241, 247))
    with pdf.table(
        headings_style=heading, line_height=size * 0.55, text_align="LEFT", cell_fill_mode=TableCellFillMode.NONE,
        borders_layout="SINGLE_TOP_LINE" if len(table.columns) > 8 else "ALL",
    ) as out:
        row = out.row()
        for column in table.columns:
            row.cell(column)
        for index, cells in enumerate(table.rows):
            tone = table.tone(index)
            style = FontFace(fill_color=_TONE_FILL[tone], emphasis="BOLD" if tone == "bad" else None) if tone else None
            row = out.row()
            for cell in cells:
                row.cell(cell, style=style)
    pdf.ln(2)


def render_pdf(doc: Document) -> bytes:
    """The same document as a PDF: headings (with bookmarks), paragraphs, tables, charts."""
    pdf = _Pdf(doc.title)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 16)
    pdf.multi_cell(0, 8, doc.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "I", 9)
    pdf.multi_cell(0, 5, doc.subtitle, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("DejaVu", "", 9)
    for name, value in doc.facts:
        pdf.multi_cell(0, 5, f"{name}: {value}", new_x="LMARGIN", new_y="NEXT")
    for index, section in enumerate(doc.sections):
        if section.level == 1 and index > 0:
            pdf.add_page()
        elif pdf.will_page_break(40):
            pdf.add_page()  # no heading alone at the foot of a page
        else:
            pdf.ln(3)
        pdf.start_section(section.title, level=section.level - 1)
        pdf.set_font("DejaVu", "B", 14 if section.level == 1 else 11)
        pdf.multi_cell(0, 7, section.title, new_x="LMARGIN", new_y="NEXT")
        for block in section.blocks:
            if isinstance(block, Paragraph):
                pdf.set_font("DejaVu", "", 9)
                pdf.multi_cell(0, 4.6, block.text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1.5)
            elif isinstance(block, Table):
                _pdf_table(pdf, block)
            elif isinstance(block, Figure):
                width = pdf.epw * 0.85
                pdf.image(io.BytesIO(block.chart.png), x=pdf.l_margin + (pdf.epw - width) / 2, w=width,
                          alt_text=block.chart.alt, title=block.chart.title)
                pdf.set_font("DejaVu", "I", 8)
                pdf.cell(0, 5, block.chart.title, align="C", new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2)
    return bytes(pdf.output())
