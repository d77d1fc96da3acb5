"""helpers.qat: fake quantization with a straight-through estimator, torchao's QAT prepare/convert flow, the QAT
training loop (model selection on validation) and the cache of QAT checkpoints."""

import copy
import json

import pytest
import torch

from helpers import finetune, models, qat

# --- fake quantization by hand ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale,zero_point,qmin,qmax", [(0.1, 0, -128, 127), (0.037, 3, -128, 127),
                                                        (0.5, 128, 0, 255), (1.0, 0, -8, 7)])
def test_forward_matches_torch_fake_quantize(scale, zero_point, qmin, qmax):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2000, generator=generator) * (qmax - qmin) * scale / 3
    halfway = (torch.arange(qmin - 3, qmax + 3) - zero_point + 0.5) * scale  # ties at every rounding boundary
    x = torch.cat([x, halfway])
    ours = qat.fake_quantize_ste(x, scale, zero_point, qmin, qmax)
    assert torch.equal(ours, torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax))


def test_ste_gradient_on_a_tiny_tensor():
    x = torch.tensor([-130.6, -128.4, -128.6, -0.5, 0.5, 126.5, 127.4, 127.6, 200.0], requires_grad=True)
    qat.fake_quantize_ste(x, 1.0, 0, -128, 127).sum().backward()
    # inside the range after rounding: gradient 1; saturated (round(x) < -128 or > 127): gradient 0
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert x.grad.tolist() == qat.ste_rule(x, 1.0, 0, -128, 127).tolist()


def test_gradient_check_passes_the_ste_and_catches_wrong_gradients():
    result = qat.gradient_check(qat.fake_quantize_ste)
    assert result["passed"] and 0 < result["inside"] < result["n"]
    assert result["grad_vs_torch_max_diff"] == 0.0

    class Unclipped(torch.autograd.Function):  # the STE without the clipping: gradient 1 everywhere
        @staticmethod
        def forward(ctx, x, scale, zero_point, qmin, qmax):
            return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)

        @staticmethod
        def backward(ctx, grad):
            return grad, None, None, None, None

    wrong = qat.gradient_check(Unclipped.apply)
    assert wrong["forward_max_diff"] == 0.0 and not wrong["passed"] and wrong["grad_vs_rule_max_diff"] > 0.1

    def no_ste(x, scale, zero_point, qmin, qmax):  # round() has zero gradient: nothing reaches x
        return (torch.round(x / scale) + zero_point).clamp(qmin, qmax).sub(zero_point).mul(scale)

    assert not qat.gradient_check(no_ste)["passed"]
    with pytest.raises(ValueError, match="no gradient"):
        qat.gradient_check(lambda x, *args: torch.fake_quantize_per_tensor_affine(x.detach(), *args))


def test_fake_quantize_rejects_bad_parameters():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="qmin < qmax"):
        qat.fake_quantize_ste(x, 0.1, 0, 5, 5)
    with pytest.raises(ValueError, match="scale must be positive"):
        qat.fake_quantize_ste(x, 0.0, 0, -128, 127)
    with pytest.raises(ValueError, match=r"zero_point must lie in \[qmin, qmax\]"):
        qat.fake_quantize_ste(x, 0.1, 300, -128, 127)


# --- torchao's QAT flow -----------------------------------------------------------------------------------------

@pytest.fixture
def tiny_for_qat(make_tiny_bert):
    # hidden 64 and intermediate 128: every Linear's input width is a multiple of the group size (32)
    return make_tiny_bert(logit_scale=5.0, hidden_size=64, intermediate_size=128)


def test_prepare_then_convert_quantizes_the_weights(tiny_for_qat, course_tokenizer):
    from torchao.quantization import quantize_
    from torchao.quantization.qat import FakeQuantizedLinear, QATConfig

    settings = qat.QATSettings(weight_bits=4, group_size=32)
    batch = models.encode(course_tokenizer, ["a fine film", "dull and long", "not bad at all"], 12)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    fp32 = tiny_for_qat(**inputs).logits.detach()
    prepared = qat.prepare(copy.deepcopy(tiny_for_qat), settings)
    assert isinstance(prepared.bert.encoder.layer[0].intermediate.dense, FakeQuantizedLinear)
    logits = prepared(**inputs).logits
    logits.sum().backward()  # fake quantization passes gradients (STE) to the fp32 weights
    assert prepared.classifier.weight.grad is not None and prepared.classifier.weight.grad.abs().sum() > 0
    assert not torch.equal(logits.detach(), fp32) and torch.allclose(logits.detach(), fp32, atol=0.2 * fp32.abs().max())

    converted = copy.deepcopy(prepared).eval()
    quantize_(converted, QATConfig(qat.base_config(settings.weight_bits, settings.group_size), step="convert"))
    weight = converted.bert.encoder.layer[0].intermediate.dense.weight
    assert type(weight).__name__ == "IntxUnpackedToInt8Tensor"
    assert weight.qdata.dtype == torch.int8 and weight.qdata.min() >= -8 and weight.qdata.max() <= 7
    assert weight.scale.shape == (128, 64 // 32)  # one scale per group of 32 inputs
    with torch.no_grad():  # the converted model computes what fake quantization simulated in training
        assert torch.allclose(converted(**inputs).logits, prepared.eval()(**inputs).logits, atol=1e-4)


def test_base_config_and_settings_validation():
    from torchao.quantization import PerAxis, PerGroup

    assert qat.base_config(4, 32).weight_granularity == PerGroup(32)
    assert qat.base_config(8, None).weight_granularity == PerAxis(0)
    assert qat.base_config(3, 64).weight_dtype == torch.int3
    with pytest.raises(ValueError, match="weight_bits must be 2..8"):
        qat.QATSettings(weight_bits=1)
    with pytest.raises(ValueError, match="select_by"):
        qat.QATSettings(select_by="loss")
    assert qat.QATSettings().key(finetune.SMOKE) != qat.QATSettings(group_size=64).key(finetune.SMOKE)
    assert qat.QATSettings().key(finetune.SMOKE) != qat.QATSettings().key(finetune.FULL)


def test_train_qat_selects_on_validation(tiny_for_qat, course_tokenizer):
    from helpers import data

    validation = data.load_rotten_tomatoes()["validation"].head(48)
    settings = qat.QATSettings(steps=3, eval_every=2, train_examples=64, batch_size=16, lr=1e-3)
    teacher = copy.deepcopy(tiny_for_qat)
    student = qat.prepare(copy.deepcopy(tiny_for_qat), settings)
    model, history = qat.train_qat(student, teacher, course_tokenizer, settings, max_len=12, progress=False,
                                   validation=validation)
    assert [row["step"] for row in history] == [0, 2, 3]
    assert all(row["train_loss"] is None for row in history[:1]) and all(row["train_loss"] > 0 for row in history[1:])
    assert sum(row["selected"] for row in history) == 1
    chosen = next(row for row in history if row["selected"])
    assert chosen["agreement"] == max(row["agreement"] for row in history)
    assert not model.training
    with pytest.raises(ValueError, match="validation split"):
        qat.train_qat(student, teacher, course_tokenizer, settings, 12, progress=False,
                      validation=data.load_rotten_tomatoes()["test"].head(8))


# --- the cache ---------------------------------------------------------------------------------------------------

def test_get_qat_classifier_caches_loads_and_rebuilds(tmp_path, monkeypatch):
    from torchao.quantization.qat import FakeQuantizedLinear

    teacher = models.load_classifier(num_labels=2)
    calls = []

    def fake_get_classifier(config, cache_dir=None, progress=True):
        return teacher, None, {}

    def fake_train(student, teacher_model, tokenizer, settings, max_len, progress=True):
        calls.append(max_len)
        with torch.no_grad():
            student.classifier.bias.add_(1.0)  # a recognisable change
        return student.eval(), [{"step": 0, "agreement": 1.0, "accuracy": 0.5, "selected": True}]

    monkeypatch.setattr(finetune, "get_classifier", fake_get_classifier)
    monkeypatch.setattr(qat, "train_qat", fake_train)
    settings = qat.QATSettings(steps=1, eval_every=1)
    first, _, info = qat.get_qat_classifier(settings, finetune.SMOKE, cache_dir=tmp_path, progress=False)
    assert not info["from_cache"] and calls == [finetune.SMOKE.max_len]
    entry = tmp_path / info["path"]
    assert entry.name == f"qat-{settings.key(finetune.SMOKE)}"
    assert json.loads((entry / "meta.json").read_text())["settings"]["steps"] == 1

    second, _, info = qat.get_qat_classifier(settings, finetune.SMOKE, cache_dir=tmp_path, progress=False)
    assert info["from_cache"] and len(calls) == 1 and info["history"][0]["selected"]
    assert isinstance(second.bert.encoder.layer[0].output.dense, FakeQuantizedLinear)  # returned prepared
    assert torch.equal(second.classifier.bias, teacher.classifier.bias + 1.0)

    (entry / "weights.pt").write_bytes(b"not a checkpoint")  # corrupt: the sha256 no longer matches
    _, _, info = qat.get_qat_classifier(settings, finetune.SMOKE, cache_dir=tmp_path, progress=False)
    assert not info["from_cache"] and len(calls) == 2
