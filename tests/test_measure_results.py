import json
import time

import pytest
import torch

from helpers import checks, measure, results, tables
from helpers.paths import atomic_write


@pytest.fixture(autouse=True)
def build_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path))
    return tmp_path


def test_state_dict_bytes_tracks_parameters():
    small, big = torch.nn.Linear(10, 10), torch.nn.Linear(100, 100)
    assert measure.state_dict_bytes(big) > 100 * 100 * 4
    assert measure.state_dict_bytes(small) < measure.state_dict_bytes(big)


def test_size_on_disk_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing at"):
        measure.size_on_disk(tmp_path / "nope.pt")


def test_onnx_size_counts_external_data(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((256, 256), dtype=np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], [weight])
    model = helper.make_model(graph)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    files = measure.onnx_files(path)
    assert [f.name for f in files] == ["m.onnx", "m.onnx.data"]
    assert measure.size_on_disk(path) > 256 * 256 * 4 > path.stat().st_size


def test_onnx_invalid_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        measure.onnx_files(bad)
    with pytest.raises(FileNotFoundError, match="export the model first"):
        measure.onnx_files(tmp_path / "missing.onnx")


def test_latency_reports_median_spread_and_threads():
    calls = []
    lat = measure.latency(lambda: (calls.append(1), time.sleep(0.002)), runs=5, warmup=2, threads=1)
    assert len(calls) == 7
    assert lat.threads == 1 and lat.runs == 5
    assert 2.0 <= lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert lat.as_dict()["spread_ms"] == pytest.approx(lat.p90_ms - lat.p10_ms)


def test_latency_restores_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # not 1: with one thread already set, a latency(threads=1) that never restores passes
    try:
        seen = []
        measure.latency(lambda: seen.append(torch.get_num_threads()), runs=1, warmup=0, threads=1)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_available_threads():
    import os

    n = measure.available_threads()
    assert 1 <= n <= (os.cpu_count() or 1)


def test_latency_bad_runs():
    with pytest.raises(ValueError, match="runs >= 1"):
        measure.latency(lambda: None, runs=0)


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


def test_course_notebooks(tmp_path):
    from helpers.paths import course_notebooks

    for name in ("02_b.ipynb", "01_a.ipynb", "scratch.ipynb", "1_x.ipynb", "03_c.txt"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in course_notebooks(source_dir=tmp_path)] == ["01_a.ipynb", "02_b.ipynb"]
    assert [p.name for p in course_notebooks(["02"], source_dir=tmp_path)] == ["02_b.ipynb"]
    assert [p.name for p in course_notebooks()][:1] == ["01_int8_scaling.ipynb"]


def test_sha256_file(tmp_path):
    import hashlib

    from helpers.paths import sha256_file

    blob = bytes(range(256)) * 5000  # > 1 MiB: more than one chunk
    (tmp_path / "f.bin").write_bytes(blob)
    assert sha256_file(tmp_path / "f.bin") == hashlib.sha256(blob).hexdigest()


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_tables():
    rows = [{"model": "fp32", "MB": 90.123456, "ok": True}, {"model": "int8", "MB": 30.5, "ok": False}]
    md = tables.to_markdown(rows, digits=1)
    assert md.splitlines()[0] == "| model | MB | ok |"
    assert "| int8 | 30.5 | no |" in md
    assert "<td>90.1</td>" in tables.to_html(rows, digits=1)
    with pytest.raises(ValueError, match="no rows"):
        tables.to_markdown([])
    tiny = tables.to_markdown([{"mse": 3.054e-6, "zero": 0.0, "small": 0.0123}], digits=3)
    assert tiny.splitlines()[-1] == "| 3.05e-06 | 0.000 | 0.012 |"


def test_checks_default_hint_and_strict(monkeypatch, capsys):
    monkeypatch.delenv(checks.STRICT_ENV_VAR, raising=False)
    checks.check_close(0.5, name="ex1", expected=0.5, hint="h")
    assert checks.outcomes["ex1"] is True and "✅ ex1: correct" in capsys.readouterr().out
    checks.check_close(0.7, name="ex1", expected=0.5, hint="look at the scale")
    assert checks.outcomes["ex1"] is False and "Hint: look at the scale" in capsys.readouterr().out
    checks.check_equal(..., name="ex2", expected=3, hint="h")
    assert checks.outcomes["ex2"] is False and "no answer yet" in capsys.readouterr().out
    checks.check_close("abc", name="ex2", expected=3, hint="h")
    assert "expected a number, got str" in capsys.readouterr().out
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")
    with pytest.raises(checks.ExerciseNotSolved, match="look again"):
        checks.check_true(False, name="ex3", hint="look again")


def test_summarize_external_timings():
    lat = measure.summarize([5.0, 1.0, 3.0, 2.0, 4.0], threads=2)
    assert lat.median_ms == 3.0 and lat.runs == 5 and lat.threads == 2
    assert lat.p10_ms == pytest.approx(1.4) and lat.p90_ms == pytest.approx(4.6)
    with pytest.raises(ValueError, match="no timings"):
        measure.summarize([], threads=1)
