import nbformat

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
