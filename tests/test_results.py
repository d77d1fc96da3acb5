"""helpers.results: what a notebook records, and where."""

import json

import pytest
import torch

from helpers import results


@pytest.fixture(autouse=True)
def build_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path))
    return tmp_path


def test_record_and_start(build_tmp):
    results.start("01_demo", torch="2.13")
    results.record("01_demo", "error", {"per_tensor_mse": torch.tensor(0.5), "inf": float("inf")})
    data = json.loads((build_tmp / "results" / "01_demo.json").read_text())
    assert data["error"] == {"per_tensor_mse": 0.5, "inf": "inf"} and data["meta"]["torch"] == "2.13"
    results.start("01_demo")
    assert "error" not in results.load("01_demo")


def test_record_rejects_paths():
    with pytest.raises(ValueError, match="plain name"):
        results.record("../evil", "x", 1)
