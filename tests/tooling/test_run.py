import json
import os
from pathlib import Path

import nbformat
import pytest

from helpers import machine_load, results
from tools import run


def test_keep_committable_drops_the_injected_cell_and_machine_paths(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("SMOKE = True", metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell("# Parameters\nSMOKE = False\n", metadata={"tags": ["injected-parameters"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Title"), params, injected, nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["papermill"] = {"parameters": {"SMOKE": False}, "input_path": "/somewhere/notebooks/01_x.ipynb",
                                "output_path": "/somewhere/notebooks/01_x.ipynb"}
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, str(path))
    run.keep_committable(path)
    out = nbformat.read(str(path), as_version=4)
    assert [c.source for c in out.cells[1:]] == ["SMOKE = True", "x = 1"]
    assert out.metadata["papermill"]["parameters"] == {"SMOKE": False}
    assert out.metadata["papermill"]["input_path"] == "01_x.ipynb" == out.metadata["papermill"]["output_path"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_every_run_records_its_mode_in_the_parameters(tmp_path, monkeypatch):
    """An in-place smoke run after a full one must not leave ``SMOKE: False`` in the committed metadata."""
    import papermill

    seen = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, dst, parameters, **kw: seen.append(parameters))
    monkeypatch.setattr(run, "keep_committable", lambda path: None)
    notebook = tmp_path / "01_x.ipynb"
    for full in (True, False):
        run.execute(notebook, tmp_path, full=full, kernel=None)
        run.execute(notebook, tmp_path / "build", full=full, kernel=None)
    assert seen == [{"SMOKE": False}] * 2 + [{"SMOKE": True}] * 2


# --- make outputs: the busy-machine refusal, the run record, the committed results --------------------------------

ROOT = Path(__file__).resolve().parents[2]
#: Committed notebooks whose outputs predate notebooks/results/: re-record each with ``make outputs FULL=1 NB=..``
#: and remove it from here (the test below fails while an entry is stale).
TO_RE_RECORD: tuple[str, ...] = ()


def fake_load(busy: bool) -> machine_load.MachineLoad:
    return machine_load.MachineLoad(3.0 if busy else 0.1, 0.0, 2, 1.5 if busy else 0.05, 10.0, 0.02, busy,
                                    "load average 1.50 per CPU besides ours (3.00 over 2 CPUs) > 0.25" if busy
                                    else "quiet")


@pytest.fixture
def course_dir(tmp_path, monkeypatch):
    """A one-notebook course in tmp_path: notebooks/, build/ and notebooks/results/ all temporary; papermill
    replaced by a fake kernel that, like ``course.setup``, starts the results JSON with the run id it inherits."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("SMOKE = True", metadata={"tags": ["parameters"]})]
    nbformat.write(nb, str(notebooks / "01_x.ipynb"))
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path / "build"))
    monkeypatch.setattr(run, "notebooks_dir", lambda: notebooks)
    monkeypatch.setattr(run, "course_notebooks", lambda prefixes: [notebooks / "01_x.ipynb"])
    monkeypatch.setattr(results, "committed_dir", lambda: notebooks / "results")
    monkeypatch.setattr(run.report, "write_index", lambda: tmp_path / "build" / "index.html")
    import papermill

    executed = []
    def fake_execute(src, dst, parameters, **kw):
        executed.append(parameters)
        Path(dst).write_text(Path(src).read_text())
        if os.environ.get(results.RUN_ID_ENV) != "no-setup":
            results.start(Path(src).stem, smoke=parameters["SMOKE"])
    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    return notebooks, executed


def test_in_place_refuses_a_busy_machine_without_force(course_dir, monkeypatch, capsys):
    notebooks, executed = course_dir
    monkeypatch.setattr(machine_load, "measure_load", lambda **kw: fake_load(busy=True))
    assert run.main(["--in-place", "--full"]) == 3
    err = capsys.readouterr().err
    assert "not recording 01_x.ipynb: the machine is busy (load average 1.50 per CPU" in err
    assert "--force" in err and "make outputs FORCE=1" in err
    assert executed == [] and not (notebooks / "results").exists()


@pytest.mark.parametrize("busy", [True, False])
def test_a_recorded_run_carries_one_run_id_and_is_committed(course_dir, monkeypatch, busy):
    notebooks, executed = course_dir
    monkeypatch.setattr(machine_load, "measure_load", lambda **kw: fake_load(busy))
    (notebooks / "results").mkdir()
    (notebooks / "results" / "_timings.json").write_text(json.dumps({"02_other": {"full": 60.0}}))
    assert run.main(["--in-place", "--full"] + (["--force"] if busy else [])) == 0
    assert executed == [{"SMOKE": False}] and results.RUN_ID_ENV not in os.environ
    meta = nbformat.read(str(notebooks / "01_x.ipynb"), as_version=4).metadata["int8_course"]
    assert meta["mode"] == "full" and meta["forced"] is busy and meta["load"]["busy"] is busy
    assert len(meta["run_id"]) == 32
    committed = json.loads((notebooks / "results" / "01_x.json").read_text())
    assert committed == results.load("01_x")  # a copy of build/results/01_x.json
    assert committed["run_id"] == meta["run_id"] and committed["run"] == meta
    timings = json.loads((notebooks / "results" / "_timings.json").read_text())
    assert timings["02_other"] == {"full": 60.0} and set(timings["01_x"]) == {"full"}


def test_a_results_json_from_another_run_is_not_committed(course_dir, monkeypatch, capsys):
    notebooks, _ = course_dir
    monkeypatch.setattr(machine_load, "measure_load", lambda **kw: fake_load(False))
    monkeypatch.setattr(run.uuid, "uuid4", lambda: type("U", (), {"hex": "no-setup"})())
    assert run.main(["--in-place", "--full"]) == 1
    assert "was not written by this run" in capsys.readouterr().err
    assert not (notebooks / "results" / "01_x.json").exists()


def test_a_run_without_a_run_id_leaves_no_stale_one(course_dir, monkeypatch):
    notebooks, _ = course_dir
    monkeypatch.setenv(results.RUN_ID_ENV, "stale")
    run.execute(notebooks / "01_x.ipynb", notebooks, full=False, kernel=None)
    assert results.load("01_x")["run_id"] is None and os.environ[results.RUN_ID_ENV] == "stale"


def test_the_rerun_time_comes_from_the_committed_timings(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "committed_dir", lambda: tmp_path)
    assert results.rerun_time_text("01_x") == "no committed timing yet"
    run.record_timing(tmp_path / "_timings.json", "01_x", "full", seconds=306.0)
    run.record_timing(tmp_path / "_timings.json", "01_x", "smoke", failure="boom")
    assert results.committed_timings("01_x") == {"full": 306.0}
    assert results.rerun_time_text("01_x") == "a re-run took 5.1 min full on the machine that recorded this page"


def test_committed_results_match_notebooks():
    """Each committed notebook with notebooks/results/<stem>.json was recorded by that run (same run id), in full
    mode, on a quiet machine unless forced; every other notebook is listed in TO_RE_RECORD."""
    committed = ROOT / "notebooks" / "results"
    stems = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    stale = [s for s in TO_RE_RECORD if (committed / f"{s}.json").is_file()]
    assert not stale, f"{stale} have their results JSON now: remove them from TO_RE_RECORD"
    unknown = [s for s in TO_RE_RECORD if s not in stems]
    assert not unknown, f"TO_RE_RECORD names notebooks that do not exist: {unknown}"
    for stem in stems:
        path = committed / f"{stem}.json"
        if stem in TO_RE_RECORD:
            continue
        assert path.is_file(), f"{stem} has no {path.relative_to(ROOT)}: re-record it with make outputs FULL=1"
        meta = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())["metadata"].get("int8_course", {})
        data = json.loads(path.read_text())
        assert meta.get("run_id") and data.get("run_id") == meta["run_id"], \
            f"{stem}: the notebook's run id {meta.get('run_id')} is not its results JSON's {data.get('run_id')}"
        assert meta.get("mode") == "full", f"{stem}: committed outputs must be a full run, got {meta.get('mode')}"
        assert not meta["load"]["busy"] or meta["forced"], f"{stem} was recorded on a busy machine without --force"
