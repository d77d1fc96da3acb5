import math

import pytest
import torch

from helpers import int8


@pytest.fixture
def x():
    return torch.randn(64, 32, generator=torch.Generator().manual_seed(0)) * 3


def test_qrange():
    assert int8.qrange(8, signed=True) == (-128, 127)
    assert int8.qrange(8, signed=False) == (0, 255)
    assert int8.qrange(4, signed=True) == (-8, 7)


def test_affine_matches_torch_per_tensor_bit_exactly(x):
    scale, zp = int8.qparams(x, 8, "affine")  # quint8
    ours = int8.quantize(x, scale, zp, 8, signed=False)
    theirs = torch.quantize_per_tensor(x, scale.item(), int(zp), torch.quint8).int_repr().to(torch.int64)
    assert torch.equal(ours, theirs)


def test_symmetric_matches_torch_per_tensor_bit_exactly(x):
    scale, zp = int8.qparams(x, 8, "symmetric")  # qint8
    assert int(zp) == 0
    ours = int8.quantize(x, scale, zp, 8, signed=True)
    theirs = torch.quantize_per_tensor(x, scale.item(), 0, torch.qint8).int_repr().to(torch.int64)
    assert torch.equal(ours, theirs)


def test_qparams_match_torch_observers(x):
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs(x)
    s, z = obs.calculate_qparams()
    scale, zp = int8.qparams(x, 8, "affine")
    assert torch.allclose(scale, s.squeeze()) and int(zp) == int(z)

    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(x)
    s, z = obs.calculate_qparams()
    scale, zp = int8.qparams(x, 8, "symmetric", axis=0)
    assert torch.allclose(scale, s) and torch.equal(zp, z.to(torch.int64))


def test_per_channel_matches_torch_bit_exactly(x):
    scale, zp = int8.qparams(x, 8, "symmetric", axis=0)
    ours = int8.quantize(x, scale, zp, 8, signed=True, axis=0)
    theirs = torch.quantize_per_channel(x, scale.double(), zp, 0, torch.qint8).int_repr().to(torch.int64)
    assert torch.equal(ours, theirs)
    # and along the other axis
    scale1, zp1 = int8.qparams(x, 8, "affine", axis=1)
    ours1 = int8.quantize(x, scale1, zp1, 8, signed=False, axis=1)
    theirs1 = torch.quantize_per_channel(x, scale1.double(), zp1, 1, torch.quint8).int_repr().to(torch.int64)
    assert torch.equal(ours1, theirs1)


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("axis", [None, 0])
@pytest.mark.parametrize("bits", [2, 4, 8, 12])
def test_round_trip_within_half_a_step(x, scheme, axis, bits):
    signed = int8.default_signed(scheme)
    scale, zp = int8.qparams(x, bits, scheme, axis)
    x_hat = int8.dequantize(int8.quantize(x, scale, zp, bits, signed, axis), scale, zp, axis)
    step = scale if axis is None else scale.reshape(-1, 1)
    assert torch.all((x - x_hat).abs() <= step / 2 + 1e-6)


def test_zero_is_exact():
    x = torch.tensor([0.0, 0.3, 1.7, 2.5])  # all positive: the range is widened to contain 0
    for scheme in int8.SCHEMES:
        assert int8.fake_quantize(x, 8, scheme)[0].item() == 0.0


def test_more_bits_less_error(x):
    errors = [int8.quant_error(x, int8.fake_quantize(x, b))["mse"] for b in (2, 4, 6, 8)]
    assert errors == sorted(errors, reverse=True)
    sqnr8 = int8.quant_error(x, int8.fake_quantize(x, 8))["sqnr_db"]
    assert 35 < sqnr8 < 50  # ~6 dB per bit for a Gaussian


def test_per_channel_beats_per_tensor_with_uneven_rows():
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    w[0] *= 50  # one row with a much larger range
    per_tensor = int8.quant_error(w, int8.fake_quantize(w, 8, "symmetric"))["mse"]
    per_channel = int8.quant_error(w, int8.fake_quantize(w, 8, "symmetric", axis=0))["mse"]
    assert per_channel < per_tensor / 5


def test_clipping_saturates():
    x = torch.tensor([-10.0, -1.0, 0.0, 1.0, 10.0])
    x_hat = int8.fake_quantize(x, 8, "symmetric", clip=(-2.0, 2.0))
    assert x_hat.abs().max().item() <= 2.0 + 2.0 / 127.5 + 1e-6  # -128 is one step past -amax
    assert abs(x_hat[3].item() - 1.0) < 0.01


def test_sqnr_of_identical_is_inf():
    x = torch.ones(4)
    assert math.isinf(int8.sqnr_db(x, x))


@pytest.mark.parametrize("bad, exc, match", [
    (torch.tensor([]), ValueError, "empty tensor"),
    (torch.tensor([1, 2, 3]), TypeError, "floating-point tensor, got torch.int64"),
    ([1.0, 2.0], TypeError, "torch.Tensor"),
])
def test_bad_tensors(bad, exc, match):
    with pytest.raises(exc, match=match):
        int8.qparams(bad)


def test_inverted_range():
    with pytest.raises(ValueError, match="inverted range: min 3.0 is greater than max 1.0"):
        int8.qparams_from_range(3.0, 1.0)


@pytest.mark.parametrize("bits", [1, 17, 0, 8.0])
def test_bits_outside_2_to_16(bits):
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 16"):
        int8.qparams(torch.ones(3), bits=bits)


def test_unknown_scheme():
    with pytest.raises(ValueError, match="scheme must be one of"):
        int8.qparams(torch.ones(3), scheme="asymmetric")


def test_quant_error_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        int8.quant_error(torch.ones(3), torch.ones(4))


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("clip", [None, (-0.5, 2.0)])
def test_fake_quantize_equals_dequantize_of_quantize(x, scheme, axis, clip):
    signed = int8.default_signed(scheme)
    scale, zp = int8.qparams(x, 4, scheme, axis, signed, clip)
    round_trip = int8.dequantize(int8.quantize(x, scale, zp, 4, signed, axis), scale, zp, axis)
    assert torch.equal(int8.fake_quantize(x, 4, scheme, axis, clip), round_trip)


def test_quant_error_values():
    x, x_hat = torch.tensor([1.0, -2.0, 3.0, 0.0]), torch.tensor([1.0, -2.5, 3.0, 0.5])
    err = int8.quant_error(x, x_hat)
    assert err["mse"] == pytest.approx(0.125) and err["max_abs"] == pytest.approx(0.5)
    assert err["sqnr_db"] == pytest.approx(10 * math.log10(14 / 0.5)) == pytest.approx(int8.sqnr_db(x, x_hat))
