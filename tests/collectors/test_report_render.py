"""The report as a person sees it: the PDF rendered to PNG pages (pdftoppm) and the HTML
screenshotted in headless Chromium, saved under tests/artifacts/ for a look."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from aimsguard.agent._policy import parse_policy
from aimsguard.collectors.report import MonthlyReport, ReportFormat, build_monthly_report, write_report

from .synthetic_month import loan_advisor, policy_document, support_bot, synthetic_month

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "report"
CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI") == "true"


def _needs(tool: str | None) -> None:
    if tool is None or not Path(tool).exists():
        if IN_CI:
            pytest.fail(f"{tool} is required in CI")
        pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module")
def report() -> MonthlyReport:
    events = synthetic_month("2026-09", [support_bot(600, worse=False), loan_advisor(400, worse=False)], seed=3)
    events += synthetic_month("2026-10", [support_bot(1200), loan_advisor(800)], seed=3)
    return build_monthly_report(events, month="2026-10", policy=parse_policy(policy_document()))


def test_pdf_renders_to_pages_with_the_charts(report: MonthlyReport, tmp_path: Path) -> None:
    pdftoppm = shutil.which("pdftoppm")
    _needs(pdftoppm)
    pdf = tmp_path / "report.pdf"
    write_report(report, ReportFormat.PDF, pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("report-page-*.png"):
        old.unlink()
    subprocess.run([pdftoppm, "-png", "-r", "70", str(pdf), str(ARTIFACTS / "report-page")], check=True, timeout=60)
    pages = sorted(ARTIFACTS.glob("report-page-*.png"))
    assert len(pages) >= 4  # overview, two systems, ISO mapping
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout if shutil.which("pdftotext") else ""
    if text:
        assert "MISSED" in text and "A.6.2.8" in text and "Loan pre-screening" in text
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout if shutil.which("pdfimages") else ""
    if images:
        charts = sum(len(s.figures.days) > 0 for s in report.systems) * 2  # at least volume and latency per system
        assert len([line for line in images.splitlines()[2:] if line.strip()]) >= charts


def test_html_is_one_self_contained_file_and_renders_in_chromium(report: MonthlyReport, tmp_path: Path) -> None:
    html_file = tmp_path / "report.html"
    write_report(report, ReportFormat.HTML, html_file)
    html = html_file.read_text()
    # Nothing to fetch: no external scripts, styles or images; charts are data: URIs.
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    charts = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(charts) >= 4 and all(base64.b64decode(c).startswith(b"\x89PNG") for c in charts)
    _needs(CHROMIUM)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(html_file.as_uri())
            page.screenshot(path=str(ARTIFACTS / "report-html.png"), full_page=True)
            assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
            loaded = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
            assert loaded == len(charts)
            missed = page.locator("tr.bad", has_text="MISSED")
            assert missed.count() == 4
        finally:
            browser.close()


def test_markdown_links_its_charts(report: MonthlyReport, tmp_path: Path) -> None:
    written = write_report(report, ReportFormat.MD, tmp_path / "report.md")
    text = written[0].read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((tmp_path / link).read_bytes().startswith(b"\x89PNG") for link in links)
    assert "| latency-p95 |" not in text  # a missed objective is bold
    assert "| **latency-p95** |" in text
