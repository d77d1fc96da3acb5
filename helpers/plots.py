"""Plot defaults and ``save_fig``, which keeps each figure for the HTML report (build/figures/<notebook>/)."""

from __future__ import annotations

from pathlib import Path

from .paths import atomic_write, build_dir


def figures_dir(notebook: str) -> Path:
    return build_dir() / "figures" / notebook


def save_fig(fig, notebook: str, name: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as build/figures/<notebook>/<name>.png (atomically) and return the path."""
    if not name or "/" in name:
        raise ValueError(f"figure name must be a plain file name, got {name!r}")
    path = figures_dir(notebook) / f"{name}.png"
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def style() -> None:
    """The course's plot defaults."""
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.figsize": (7, 3.5), "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False})
