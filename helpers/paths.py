"""Where the course writes things: build/ for results and executed notebooks, a cache for trained models."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The checkout this package lives in (helpers/ sits at its top level).
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def build_dir() -> Path:
    """build/ of the checkout, or $INT8_COURSE_BUILD."""
    return Path(os.environ.get("INT8_COURSE_BUILD", PROJECT_ROOT / "build"))


def cache_dir() -> Path:
    """The local cache for fine-tuned models and exported files, or $INT8_COURSE_CACHE."""
    return Path(os.environ.get("INT8_COURSE_CACHE", build_dir() / "cache"))


def notebooks_dir() -> Path:
    return PROJECT_ROOT / "notebooks"


def course_notebooks(prefixes=None, source_dir: Path | None = None) -> list[Path]:
    """The course notebooks ``NN_*.ipynb`` in order; only those whose name starts with one of ``prefixes``, if given."""
    notebooks = sorted(Path(source_dir or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(prefixes))]
    return notebooks


class atomic_write:
    """Write a file atomically: yield a temporary path beside ``path``; rename it over ``path`` on success.

    A crash or an exception leaves ``path`` as it was (or absent), never half written::

        with atomic_write(path) as tmp:
            torch.save(state, tmp)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (cache and checkpoint integrity checks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
