"""The report page in a real headless browser (the system's Chromium, driven by Playwright; no
browser is downloaded): each example sweep's report, shrunk to a few seeds and steps with the
same structure, draws every chart with no console error, makes no network request, and switching
the curves' x-axis changes what is drawn. Screenshots go to the test's tmp_path (printed)."""

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from deeplinear import sweep
from deeplinear.report.sweep_report import write_report

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHRINK = [  # (pattern, replacement): fewer seeds, steps and grid points, the same axes and methods
    (r"(?m)^seeds = \d+", "seeds = 2"),
    (r"(?m)^steps = \d+", "steps = 20"),  # each method's length; the sweep's, below
    (r"num = \d+", "num = 3"),
    (r"\[100, 1000, 10000, 100000, \"population\"\]", '[1000, 100, "population"]'),
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail(
        "no Chromium on PATH: install the system package (apt-get install chromium) as .ci/run "
        "does; the report's browser test needs it"
    )


def small(example: str) -> str:
    text = (EXAMPLES / example).read_text()
    for pattern, replacement in SHRINK:
        text = re.sub(pattern, replacement, text)
    return text.replace("steps = 20", "steps = 200", 1)  # the first is the sweep's own


@pytest.mark.parametrize("example", ["seed_fair.toml", "more_data.toml"])
def test_each_example_report_draws_in_a_browser(example, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright is missing: pip install -e '.[dev]' (it drives the system Chromium)"
        )

    text = small(example)
    out = tmp_path / "sweep"
    sweep.run(sweep.parse(tomllib.loads(text), source=text), out)
    page_path = write_report(out)
    print(f"screenshots in {tmp_path}")
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "request",
                lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(r.url),
            )
            page.goto(page_path.as_uri())
            drawn = "[...document.querySelectorAll('.chart')].every(e => e.dataset.drawn)"
            page.wait_for_function(drawn, timeout=15_000)
            charts = page.eval_on_selector_all(
                ".chart", "es => es.map(e => [e.id, e.querySelectorAll('svg path').length])"
            )
            page.screenshot(path=tmp_path / "steps.png", full_page=True)
            before = page.inner_html("#curves")
            page.select_option("#xaxis", "flops")
            page.check("#xlog")
            page.wait_for_function(
                "document.getElementById('curves').dataset.drawn === 'flops|log'", timeout=10_000
            )
            after = page.inner_html("#curves")
            page.screenshot(path=tmp_path / "flops_log.png", full_page=True)
        finally:
            browser.close()
    assert problems == []
    ids = {chart_id for chart_id, _ in charts}
    assert {"curves", "profile0"} <= ids
    if "more_data" in example:
        assert {"axis0", "profile1"} <= ids  # the axis figure; one profile per target
    assert all(paths > 5 for _, paths in charts), charts  # marks drawn, not an empty frame
    assert before != after and "FLOPs" in after and "FLOPs" not in before
