"""The busy-machine check: verdicts from injected readings (never the real machine's load), and the setup cell's
lines."""

import dataclasses
import json
import math
import os

import pytest

from helpers import course, machine_load, results
from helpers.machine_load import LOAD_PER_CPU_LIMIT, SPREAD_LIMIT, MachineLoad


def timed(durations_ms):
    """A fake kernel and clock: each kernel call takes the next of ``durations_ms`` (the first is the warm-up)."""
    now, left = [0.0], list(durations_ms)
    def kernel():
        now[0] += left.pop(0) / 1e3
    return kernel, lambda: now[0]


def reading(load, durations_ms=(10.0,) * 16, threads=2, own_load=0.0):
    kernel, clock = timed(durations_ms)
    return machine_load.measure_load(threads, own_load, read_load=lambda: load, kernel=kernel, clock=clock)


def test_a_quiet_machine_is_quiet():
    r = reading(0.2)
    assert not r.busy and r.load_per_cpu == pytest.approx(0.1) and r.spread == pytest.approx(0, abs=1e-9)
    assert r.kernel_median_ms == pytest.approx(10)
    assert "<=" in r.reason and r.describe().startswith("quiet: load 0.10 per CPU (0.20 over 2 CPUs")


def test_a_loaded_machine_is_busy_and_says_which_reading_and_limit():
    r = reading(3.0)
    assert r.busy and r.load_per_cpu == pytest.approx(1.5)
    assert r.reason == f"load average 1.50 per CPU besides ours (3.00 over 2 CPUs, 0.00 ours) > {LOAD_PER_CPU_LIMIT}"
    assert r.describe().startswith("busy:")


def test_our_own_share_is_subtracted_before_comparing():
    assert reading(1.2).busy
    r = reading(1.2, own_load=1.0)
    assert not r.busy and r.load_per_cpu == pytest.approx(0.1) and r.own_load == 1.0
    assert reading(1.2, own_load=5.0).own_load == 2.0  # never more than the CPUs torch uses


def test_a_wide_calibration_spread_is_busy_even_on_a_low_load():
    r = reading(0.0, [10.0] * 12 + [40.0] * 4)
    assert r.busy and "calibration matmul spread" in r.reason and f"> {SPREAD_LIMIT:.0%}" in r.reason
    assert r.spread > SPREAD_LIMIT and "load average" not in r.reason


def test_without_a_load_average_the_load_is_unknown_not_guessed(monkeypatch):
    monkeypatch.delattr(os, "getloadavg", raising=False)  # as on Windows
    assert machine_load._system_load() is None
    kernel, clock = timed([10.0] * 16)
    r = machine_load.measure_load(2, 0.0, kernel=kernel, clock=clock)
    assert r.load_1min is None and r.load_per_cpu is None and not r.busy
    assert "load unknown" in r.reason and "load average unknown" in r.describe()
    assert reading(None, [10.0] * 12 + [40.0] * 4).busy  # the spread still decides


def test_the_reading_is_frozen_and_bad_input_is_named():
    r = reading(0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.busy = True
    assert json.loads(json.dumps(r.as_dict()))["busy"] is False
    with pytest.raises(ValueError, match="threads >= 1 and repeats >= 3"):
        machine_load.measure_load(2, 0.0, read_load=lambda: 0.0, kernel=lambda: None, repeats=2)


def test_own_share_follows_the_load_averages_decay():
    assert machine_load.own_share(0.0, 10.0) == 0.0
    assert machine_load.own_share(30.0) == pytest.approx(0.5)  # timing unknown: the upper bound cpu / 60 s
    long_run = machine_load.own_share(2 * 3600.0, 3600.0)  # two threads busy for an hour, ended just now
    assert long_run == pytest.approx(2.0, rel=1e-6)
    assert machine_load.own_share(2 * 3600.0, 3600.0, ended_ago=60.0) == pytest.approx(2.0 * math.exp(-1), rel=1e-6)


def test_the_calibration_kernel_is_a_fixed_matmul():
    out1, out2 = machine_load.calibration_kernel(8)(), machine_load.calibration_kernel(8)()
    assert out1.shape == (8, 8) and bool((out1 == out2).all())


BUSY = MachineLoad(3.0, 0.0, 2, 1.5, 10.0, 0.02, True, "load average 1.50 per CPU besides ours > 0.25")


def test_setup_records_the_load_warns_when_busy_and_says_where_the_page_came_from(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv(results.RUN_ID_ENV, "abc123")
    monkeypatch.setattr(results, "committed_dir", lambda: tmp_path / "committed")
    (tmp_path / "committed").mkdir()
    (tmp_path / "committed" / "_timings.json").write_text(json.dumps({"01_demo": {"smoke": 72.0, "full": 306.0}}))
    monkeypatch.setattr(machine_load, "measure_load", lambda *a, **k: BUSY)
    course.setup("01_demo", smoke=False)
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("mode: FULL (workshop settings); seed 0; ") and "machine busy" in line for line in out)
    assert "a re-run took 1.2 min smoke / 5.1 min full on the machine that recorded this page; the parameters cell " \
           "above says SMOKE = True for learners: a re-run uses quick settings unless you change it" in out
    assert out[-1] == ("⚠️ the machine is busy (load average 1.50 per CPU besides ours > 0.25): timings in this run "
                       "are noisy; re-run on a quiet machine before comparing speeds")
    data = results.load("01_demo")
    assert data["run_id"] == "abc123" and data["meta"]["load"]["busy"] is True


def test_setup_on_a_quiet_machine_prints_no_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path / "build"))
    monkeypatch.setattr(results, "committed_dir", lambda: tmp_path / "none")
    monkeypatch.setattr(machine_load, "measure_load", lambda *a, **k: dataclasses.replace(BUSY, busy=False))
    course.setup("01_demo", smoke=True)
    out = capsys.readouterr().out
    assert "⚠️ the machine is busy" not in out and "machine quiet" in out
    assert "no committed timing yet\n" in out and "SMOKE = True" not in out
