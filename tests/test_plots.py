"""helpers.plots: a figure is kept as a PNG under the build folder, written atomically."""

import matplotlib
import pytest

from helpers import plots

matplotlib.use("Agg")


def test_save_fig_writes_a_png_into_the_notebooks_figure_folder(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    path = plots.save_fig(fig, "01_demo", "line")
    plt.close(fig)
    assert path == tmp_path / "figures" / "01_demo" / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and list(path.parent.iterdir()) == [path]
    with pytest.raises(ValueError, match="plain file name"):
        plots.save_fig(fig, "01_demo", "../escape")
