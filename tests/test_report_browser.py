"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, with no browser download. The report built from the reduced results of every study
must show each image decoded, each study's section and every verdict, and fetch nothing but
itself. Without Chromium or Playwright the test skips, saying which (``.ci/run`` installs
Chromium, ``pyproject.toml``'s dev extra Playwright)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="Playwright is not installed (pip install -e '.[dev]')"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def test_the_html_report_renders_every_figure_section_and_verdict_offline(paper_report):
    from playwright.sync_api import sync_playwright

    out, sections = paper_report
    page_url = (out / "index.html").as_uri()
    verdicts = [c.verdict for s in sections for c in s.finding.checks]
    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requested.append(r.url))
            page.route("http*://**/*", lambda route: route.abort())  # nothing may go out
            page.goto(page_url, wait_until="load")
            images = page.evaluate(
                "[...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
            headings = page.evaluate("[...document.querySelectorAll('h2[id]')].map(h => h.id)")
            chips = page.locator("span.v").all_inner_texts()
            details = page.locator("details")
            details.first.locator("summary").click()
            opened = details.first.locator("table").is_visible()
        finally:
            browser.close()
    assert len(images) == len(sections) + 1  # and cpu_balance's schedule, gang on vs off
    assert all(done and width > 0 for _, done, width in images), images
    assert {s.study for s in sections} <= set(headings)
    for v in set(verdicts):  # each verdict shown as a chip, in the summary and its section
        assert chips.count(v) >= 2 * verdicts.count(v), v
    assert {"responds", "dead", "inverted", "unclear"} & set(chips)  # the knob table
    assert opened  # a comparison table, collapsed until asked for
    assert [u for u in requested if u != page_url and not u.startswith("data:")] == []
