"""Exercise checkers: they tell the learner "correct" or give a specific hint, and never crash a notebook.

Each notebook ends with exercises; a check cell calls one of these, as ``check_x(answer, *, name=..., ...)``: the
learner's answer first, everything else by keyword. By default a wrong answer prints a hint and the notebook goes on,
so a student copy runs top to bottom. With ``INT8_COURSE_STRICT_CHECKS=1`` (set by ``make test`` and
``make run`` for the instructor notebooks, whose solutions are filled in) a wrong answer raises
``ExerciseNotSolved`` so the suite notices a broken solution.
"""

from . import _core, notebook01, notebook02, notebook03, notebook04, notebook05, notebook07
from ._core import *  # noqa: F403
from .notebook01 import *  # noqa: F403
from .notebook02 import *  # noqa: F403
from .notebook03 import *  # noqa: F403
from .notebook04 import *  # noqa: F403
from .notebook05 import *  # noqa: F403
from .notebook07 import *  # noqa: F403

__all__ = [name for module in (_core, notebook01, notebook02, notebook03, notebook04, notebook05, notebook07)
           for name in module.__all__]
