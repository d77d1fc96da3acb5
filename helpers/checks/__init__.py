"""Exercise checkers: they tell the learner "correct" or give a specific hint, and never crash a notebook.

Each notebook ends with exercises; a check cell calls one of these. By default a wrong answer prints a hint and
returns False, so a student copy runs top to bottom. With ``INT8_COURSE_STRICT_CHECKS=1`` (set by ``make test`` and
``make run`` for the instructor notebooks, whose solutions are filled in) a wrong answer raises
``ExerciseNotSolved`` so the suite notices a broken solution.
"""

from ._core import STRICT_ENV_VAR, ExerciseNotSolved, check_close, check_equal, check_true, outcomes, report, strict
from .notebook01 import check_clip_ratio_choice, check_per_channel_scales, sqnr_by_ratio
from .notebook02 import (
    ENGINE_CASES_02,
    NO_ENGINE_CASES_02,
    check_engine_picker,
    check_int8_size_prediction,
    check_layer_choice,
    layer_choice_02,
)
from .notebook03 import check_qconfig_spec, check_size_prediction
from .notebook04 import check_onnx_size_prediction, check_static_int8
from .notebook05 import check_repaired_load, check_safetensors_size, check_weight_scale, write_code_running_checkpoint
from .notebook07 import check_calibration_choice, check_fake_quantize

__all__ = ['STRICT_ENV_VAR', 'outcomes', 'ExerciseNotSolved', 'strict', 'report', 'check_equal', 'check_close',
           'check_true', 'check_per_channel_scales', 'sqnr_by_ratio', 'check_clip_ratio_choice', 'ENGINE_CASES_02',
           'NO_ENGINE_CASES_02', 'check_engine_picker', 'layer_choice_02', 'check_layer_choice',
           'check_int8_size_prediction', 'check_qconfig_spec', 'check_size_prediction',
           'check_static_int8', 'check_onnx_size_prediction',
           'write_code_running_checkpoint', 'check_repaired_load', 'check_safetensors_size', 'check_weight_scale',
           'check_fake_quantize', 'check_calibration_choice']
