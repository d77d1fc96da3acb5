"""What every checker shares: the verdict, the hint, strict mode."""


from __future__ import annotations

import math
import os

__all__ = ["STRICT_ENV_VAR", "outcomes", "ExerciseNotSolved", "strict", "report", "check_equal", "check_close"]

STRICT_ENV_VAR = "INT8_COURSE_STRICT_CHECKS"

#: The latest verdict per exercise name in this kernel (True: correct), for tests and summaries.
outcomes: dict[str, bool] = {}


class ExerciseNotSolved(AssertionError):
    """A check failed while strict checking was on."""


def strict() -> bool:
    return os.environ.get(STRICT_ENV_VAR, "") not in ("", "0", "false", "no")


def _unanswered(answer) -> bool:
    return answer is None or answer is Ellipsis


def call_learner(fn, *args):
    """``(fn(*args), None)``, or ``(None, "ExcType: message")`` when the learner's code raises: a checker turns the
    second into a hint instead of a traceback."""
    try:
        return fn(*args), None
    except Exception as err:  # the learner's code may raise anything; the hint names it
        return None, f"{type(err).__name__}: {err}"


def report(name: str, passed: bool, hint: str, success: str = "") -> None:
    """Print the verdict for exercise ``name`` and keep it in ``outcomes``; in strict mode a failure raises.

    Returns None so that a check at the end of a cell prints only its verdict."""
    outcomes[name] = bool(passed)
    if passed:
        print(f"✅ {name}: correct. {success}".rstrip())
        return
    message = f"❌ {name}: not yet. Hint: {hint}"
    if strict():
        raise ExerciseNotSolved(message)
    print(message)


def check_equal(answer, *, expected, hint: str, name: str, success: str = "") -> None:
    if _unanswered(answer):
        return report(name, False, "no answer yet: replace the `...` with your code. " + hint, success)
    return report(name, answer == expected, hint, success)


def check_close(answer, *, expected: float, hint: str, name: str, rel: float = 1e-3, abs_tol: float = 1e-6,
                success: str = "") -> None:
    if _unanswered(answer):
        return report(name, False, "no answer yet: replace the `...` with your code. " + hint, success)
    try:
        ok = math.isclose(float(answer), float(expected), rel_tol=rel, abs_tol=abs_tol)
    except (TypeError, ValueError):
        return report(name, False, f"expected a number, got {type(answer).__name__}. " + hint, success)
    return report(name, ok, hint, success)


def number_answer(name: str, answer, missing_hint: str) -> float | None:
    """The learner's answer as a float, or None after the hint for "no answer yet" or "not a number"."""
    if _unanswered(answer):
        report(name, False, missing_hint)
        return None
    try:
        return float(answer)
    except (TypeError, ValueError):
        report(name, False, f"expected a number of bytes, got {type(answer).__name__}.")
        return None
