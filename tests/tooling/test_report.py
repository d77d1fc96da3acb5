"""tools.run and tools.report: the wall-time record of ``make run`` and build/index.html built from build/."""

import json

import pytest

from helpers import results
from tools import report


@pytest.fixture(autouse=True)
def build_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path))
    return tmp_path


def test_report_index(build_tmp):
    results.start("01_demo", torch="2.13", engine="x86", threads=2, smoke=True)
    results.record("01_demo", "rows", [{"scheme": "per-tensor", "mse": 0.25}])
    index = report.write_index()
    text = index.read_text()
    assert "per-tensor" in text and "0.250" in text and "engine x86" in text


def test_report_shows_titles_timings_figures_links_and_toc(build_tmp):
    import matplotlib

    from helpers import plots
    from tools import run
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results.start("01_int8_scaling", torch="2.13", engine="x86", threads=2, smoke=True)
    results.record("01_int8_scaling", "fp32_vs_int8", {"size_ratio": 0.25, "size_bytes": {"fp32": {"total": 400},
                                                                                         "int8": {"total": 100}}})
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    plots.save_fig(fig, "01_int8_scaling", "sqnr_vs_bits")
    plt.close(fig)
    (build_tmp / "notebooks").mkdir()
    (build_tmp / "notebooks" / "01_int8_scaling.html").write_text("<html></html>")
    timings_path = build_tmp / "results" / "_timings.json"
    run.record_timing(timings_path, "01_int8_scaling", "smoke", seconds=90.04)
    run.record_timing(timings_path, "01_int8_scaling", "full", failure="ExerciseNotSolved: Exercise 2")
    run.record_timing(timings_path, "02_other", "smoke", seconds=30)

    text = report.write_index().read_text()
    title = report.notebook_title("01_int8_scaling")
    assert title.startswith("01 · ") and f"<a href='#01_int8_scaling'>{title}</a>" in text  # table of contents
    assert f"<h2>{title}</h2>" in text and "smoke: 90 s" in text and "full: failed" in text
    assert "<caption>fp32 vs int8</caption>" in text and "<td>size ratio</td><td>0.250</td>" in text
    assert "<caption>fp32 vs int8 / size bytes</caption>" in text  # nested mapping of rows -> its own table
    assert "<img src='figures/01_int8_scaling/sqnr_vs_bits.png'" in text
    assert "href='notebooks/01_int8_scaling.html'" in text
    # wall time table: minutes per mode, a failure shown as such, a total only when every notebook has a time
    rows = {r["notebook"]: r for r in report.timing_rows(report.load_timings(), ["01_int8_scaling", "02_other"])}
    assert rows["01_int8_scaling"] == {"notebook": "01_int8_scaling", "smoke (min)": "1.5", "full (min)": "failed"}
    assert rows["total"]["smoke (min)"] == "2.0" and rows["total"]["full (min)"] == "–"
    md = (build_tmp / "timings.md").read_text()
    assert "| 01_int8_scaling | 1.5 | failed |" in md and "do not edit by hand" in md
    # a later success clears the failure
    run.record_timing(timings_path, "01_int8_scaling", "full", seconds=600)
    assert json.loads(timings_path.read_text())["01_int8_scaling"] == {"smoke": 90.0, "full": 600.0}


def test_report_lists_course_notebooks_without_results(build_tmp):
    text = report.write_index().read_text()
    for path in sorted(report.notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        assert f"<section id='{path.stem}'>" in text
    assert "No results yet" in text
