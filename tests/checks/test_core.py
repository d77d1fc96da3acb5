"""helpers.checks._core: the verdict, the hint and strict mode every checker shares."""

import pytest

from helpers import checks


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
        checks.check_equal(0, name="ex3", expected=1, hint="look again")
