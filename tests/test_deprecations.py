import contextlib
import logging
import re
import warnings

import torch

from helpers import deprecations


def test_silence_known_only_filters_the_two_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deprecations.silence_known()
        warnings.warn("torch.ao.quantization is deprecated and will be removed", DeprecationWarning)
        warnings.warn("torch.quantize_per_tensor, torch.quantize_per_channel and other quantized tensor creation "
                      "functions are deprecated", UserWarning)
        warnings.warn("torch.ao.quantization is deprecated", UserWarning)  # wrong category: still shown
        warnings.warn("something else entirely", DeprecationWarning)
    assert [str(w.message) for w in caught] == ["torch.ao.quantization is deprecated", "something else entirely"]


def test_import_noise_filter_is_narrow(caplog):
    deprecations.silence_import_noise()
    deprecations.silence_import_noise()  # idempotent
    logger = logging.getLogger("torchao")
    assert sum(isinstance(f, deprecations._DropMessages) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="torchao"):
        logger.warning("Failed to load /x/_C_mxfp8.so: nope")
        logger.warning("Failed to load something important")
    assert [r.getMessage() for r in caplog.records] == ["Failed to load something important"]


def test_tally_counts_each_kind_once_in_the_order_first_seen():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("second kind\nwith a long explanation", UserWarning)
        for _ in range(3):
            warnings.warn("torch.ao.quantization is deprecated", DeprecationWarning)
        warnings.warn("second kind\nexplained differently", UserWarning)  # same first line: the same kind
        warnings.warn("second kind", DeprecationWarning)  # same text, other category: another kind
        warnings.warn("", FutureWarning)
    assert deprecations.tally(caught) == [
        {"warning": "UserWarning", "message": "second kind", "times": 2},
        {"warning": "DeprecationWarning", "message": "torch.ao.quantization is deprecated", "times": 3},
        {"warning": "DeprecationWarning", "message": "second kind", "times": 1},
        {"warning": "FutureWarning", "message": "", "times": 1},
    ]
    assert [r["message"] for r in deprecations.tally(caught, width=5)][:2] == ["secon", "torch"]
    assert deprecations.tally([]) == []


def test_known_silenced_restores_the_filters_on_leaving():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        for silenced in (True, False):
            with deprecations.known_silenced() if silenced else contextlib.nullcontext():
                warnings.warn(f"torch.ao.quantization is deprecated (silenced={silenced})", DeprecationWarning)
        assert warnings.filters == before
    assert [str(w.message) for w in caught] == ["torch.ao.quantization is deprecated (silenced=False)"]


def test_the_filters_match_what_torch_really_warns():
    def quantize():
        torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(4, 4)), {torch.nn.Linear},
                                               dtype=torch.qint8)

    for silenced in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with deprecations.known_silenced() if silenced else contextlib.nullcontext():
                quantize()
        matched = [w for w in caught if issubclass(w.category, DeprecationWarning)
                   and re.search(deprecations.AO_DEPRECATION, str(w.message))]
        assert bool(matched) is not silenced
