"""The report page in a real headless browser (the system's Chromium, driven by Playwright; no
browser is downloaded): each example sweep's report, shrunk to a few seeds and steps with the
same structure, draws every chart with no console error, makes no network request, opens with
answer sentences that agree with summary.json, ranks its table (sortable, filterable), titles
every axis, draws curve panels at least 600 px wide with opaque legend symbols in colours that
follow the method's name (so equal across reports), and switching the curves' x-axis changes
what is drawn. Screenshots go to the test's tmp_path (printed)."""

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from deeplinear import sweep
from deeplinear.report.colours import method_colours
from deeplinear.report.sweep_report import write_report

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHRINK = [  # (pattern, replacement): fewer seeds, steps and grid points, the same axes and methods
    (r"(?m)^seeds = \d+", "seeds = 2"),
    (r"(?m)^steps = \d+", "steps = 20"),  # each method's length; the sweep's, below
    (r"num = \d+", "num = 3"),
    (r"\[100, 1000, 10000, 100000, \"population\"\]", '[1000, 100, "population"]'),
    (r"(?m)^record_every = 1000", "record_every = 10"),
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


CHARTS_JS = """() => [...document.querySelectorAll('.chart')].map(c => ({
  id: c.id,
  paths: c.querySelectorAll('svg path').length,
  labelled: [...c.querySelectorAll('g.role-axis')].filter(
    a => a.querySelector('g.role-axis-label text')).length,
  untitled: [...c.querySelectorAll('g.role-axis')].filter(
    a => a.querySelector('g.role-axis-label text')
      && !(a.querySelector('g.role-axis-title text') || {}).textContent).length,
  panels: [...c.querySelectorAll('g.role-scope.cell > g > path.background')]
    .map(p => p.getBBox().width),
  legend: [...c.querySelectorAll('g.role-legend')].flatMap(l => {
    const labels = [...l.querySelectorAll('g.role-legend-label text')].map(t => t.textContent);
    return [...l.querySelectorAll('g.role-legend-symbol path')].map((p, i) => [labels[i],
      p.getAttribute('stroke'), p.getAttribute('opacity'), p.getAttribute('stroke-opacity')]);
  }),
}))"""

TABLE_JS = """() => [...document.querySelectorAll('#summary tbody tr')]
  .filter(r => r.style.display !== 'none')
  .map(r => [...r.cells].slice(0, 3).map(c => c.textContent.trim()))"""


def _check_answers(page, document):
    """Every answer sentence is on the page, and its counts are the summary rows' own."""
    shown = page.inner_text("#answers")
    assert document["answers"]
    for answer in document["answers"]:
        assert answer["sentence"] in shown
        if answer["measure"] == "held-out":
            continue
        here = [r for r in document["rows"] if r["axis_point"] == answer["point"]]
        for clause in answer["clauses"]:
            for method in clause["methods"]:
                (row,) = [r for r in here if r["method"] == method]
                if answer["measure"] == "loss":
                    index = document["targets"].index(answer["target"])
                    solved = row["targets"][index]["solved"]
                else:
                    index = document["recovery_targets"].index(answer["target"])
                    solved = row["recovery_targets"][index]["solved"]
                assert clause["solved"] == solved and clause["seeds"] == row["seeds"]
        assert answer["winner"] == [r["method"] for r in here if r["rank"] == 1]


def _check_ranked(page, document):
    """The table is ranked within each axis point (★ on each winner), sorts and filters."""
    shown = page.evaluate(TABLE_JS)
    assert [(m, p) for _, m, p in shown] == [
        (r["method"], r["axis_point"]) for r in document["rows"]
    ]
    for point in {p for _, _, p in shown}:
        ranks = [rank for rank, _, p in shown if p == point]
        assert ranks[0].startswith("★ 1")
        numbers = [int(r.lstrip("★ ")) for r in ranks]
        assert numbers == sorted(numbers)
    page.click("#summary th:nth-child(2)")  # sort by method
    methods = [m for _, m, _ in page.evaluate(TABLE_JS)]
    assert methods == sorted(methods, key=str.lower)
    page.fill("#filter", "gd")
    kept = page.evaluate(TABLE_JS)
    assert kept and all("gd" in m for _, m, _ in kept)
    page.fill("#filter", "")


@pytest.mark.parametrize(
    "example", ["seed_fair.toml", "more_data.toml", "scaledgd_completion.toml"]
)
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
            page.wait_for_function(drawn, timeout=30_000)
            found = page.evaluate(CHARTS_JS)
            page.screenshot(path=tmp_path / "steps.png", full_page=True)
            document = json.loads((out / "summary.json").read_text())
            _check_answers(page, document)
            _check_ranked(page, document)
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
    ids = {chart["id"] for chart in found}
    assert {"curves", "profile0"} <= ids
    if "more_data" in example:
        assert {"axis0", "profile1"} <= ids  # the axis figure; one profile per target
    if "completion" in example:  # the recovery target's profile and the recovery charts
        assert {"axis0", "profile1", "recovery", "rank"} <= ids
    for chart in found:
        assert chart["paths"] > 5, chart  # marks drawn, not an empty frame
        assert chart["labelled"] >= 2 and chart["untitled"] == 0, chart  # every axis titled
        assert chart["legend"], chart  # every chart says which colour is which method
        for method, stroke, opacity, stroke_opacity in chart["legend"]:
            assert stroke == method_colours([method])[method]  # the name's, in every report
            assert opacity in (None, "1") and stroke_opacity in (None, "1")
    curves = next(chart for chart in found if chart["id"] == "curves")
    assert curves["panels"] and min(curves["panels"]) >= 600
    assert before != after and "FLOPs" in after and "FLOPs" not in before
