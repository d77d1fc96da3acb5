"""Notebook 05's exercise checkers: each passes the reference solution and gives its specific hint for the usual
mistakes (checked in non-strict mode, where a checker prints instead of raising)."""

import pytest
import torch

from helpers import checks, deprecations
from helpers.checks import notebook05

deprecations.silence_known()


@pytest.fixture
def lenient(monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "0")


@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")


def quantize(model):
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


# --- repair a broken load ---------------------------------------------------------------------------------------

@pytest.fixture
def saved_int8(make_tiny_bert, tmp_path):
    int8_model = quantize(make_tiny_bert(vocab_size=64, seed=1, logit_scale=20.0))
    path = tmp_path / "int8_state.pt"
    torch.save(int8_model.state_dict(), path)
    ids = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(0))
    return int8_model, path, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_repaired_load_passes_the_rebuild(saved_int8, make_tiny_bert, strict):
    int8_model, path, inputs = saved_int8

    def load_int8(p):
        model = quantize(make_tiny_bert(vocab_size=64, seed=7))  # other weights: all of them must be replaced
        model.load_state_dict(torch.load(p, weights_only=True))
        return model

    checks.check_repaired_load(load_int8, name="ex", state_file=path, int8_model=int8_model, inputs=inputs)
    assert checks.outcomes["ex"] is True


@pytest.mark.parametrize("mistake, hint", [
    ("float", "float Linear layers"),
    ("unsafe", "ran the shell command"),
    ("other_weights", "logits differ"),
    ("raises", "load_int8 raised RuntimeError"),
    ("swallows", "returned a model from a file whose pickle calls os.system"),
])
def test_repaired_load_hints(saved_int8, make_tiny_bert, lenient, capsys, mistake, hint):
    int8_model, path, inputs = saved_int8

    def load_int8(p):
        if mistake == "float":  # the source notes' load: no error, random layers
            model = make_tiny_bert(vocab_size=64)
            model.load_state_dict(torch.load(p, weights_only=True), strict=False)
            return model
        model = quantize(make_tiny_bert(vocab_size=64, seed=7))
        if mistake == "other_weights":
            return model
        if mistake == "raises":
            make_tiny_bert(vocab_size=64).load_state_dict(torch.load(p, weights_only=True))
        if mistake == "swallows":
            try:
                model.load_state_dict(torch.load(p, weights_only=True))
            except Exception:
                pass
            return model
        model.load_state_dict(torch.load(p, weights_only=False))  # "unsafe": runs whatever the pickle says
        return model

    checks.check_repaired_load(load_int8, name="ex", state_file=path, int8_model=int8_model, inputs=inputs)
    assert checks.outcomes["ex"] is False
    assert hint in capsys.readouterr().out


def test_repaired_load_unanswered_and_strict(saved_int8, strict):
    int8_model, path, inputs = saved_int8
    with pytest.raises(checks.ExerciseNotSolved, match="no answer yet"):
        checks.check_repaired_load(..., name="ex", state_file=path, int8_model=int8_model, inputs=inputs)


def test_the_trap_runs_only_without_weights_only(tmp_path):
    marker, trap = tmp_path / "ran", tmp_path / "trap.pt"
    notebook05._write_code_running_checkpoint(trap, marker)
    with pytest.raises(Exception, match="blocked"):
        torch.load(trap, weights_only=True)
    assert not marker.exists()
    torch.load(trap, weights_only=False)  # what an unsafe loader does
    assert marker.exists()


# --- predict the size of the int8 safetensors file ------------------------------------------------------------

@pytest.fixture(scope="module")
def int8_safetensors(tmp_path_factory):
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import (
        AutoModelForSequenceClassification,
        BertConfig,
        BertForSequenceClassification,
        TorchAoConfig,
    )

    root = tmp_path_factory.mktemp("st")
    torch.manual_seed(0)
    fp32 = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=128, num_labels=2)).eval()
    fp32.save_pretrained(root / "fp32")
    int8 = AutoModelForSequenceClassification.from_pretrained(
        root / "fp32", quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    int8.save_pretrained(root / "int8")
    return fp32, root / "int8" / "model.safetensors"


def predicted(fp32, linear_bytes=1, quantized_embeddings=False):
    total = 0
    for module in fp32.modules():
        if isinstance(module, torch.nn.Linear):
            rows, cols = module.weight.shape
            total += linear_bytes * rows * cols + (rows * 5 if linear_bytes == 1 else 0) + 4 * module.bias.numel()
        else:
            per = 1 if quantized_embeddings and isinstance(module, torch.nn.Embedding) else 4
            total += per * sum(p.numel() for p in module.parameters(recurse=False))
    return total


def test_size_prediction_passes_the_count(int8_safetensors, strict):
    fp32, path = int8_safetensors
    checks.check_safetensors_size(predicted(fp32), name="ex", path=path)
    assert checks.outcomes["ex"] is True


@pytest.mark.parametrize("kwargs, hint", [
    ({"linear_bytes": 4}, "that is the fp32 size"),
    ({"quantized_embeddings": True}, "the embeddings (word, position, token type)"),
])
def test_size_prediction_hints(int8_safetensors, lenient, capsys, kwargs, hint):
    fp32, path = int8_safetensors
    checks.check_safetensors_size(predicted(fp32, **kwargs), name="ex", path=path)
    assert checks.outcomes["ex"] is False and hint in capsys.readouterr().out


def test_size_prediction_off_by_a_little(int8_safetensors, lenient, capsys):
    fp32, path = int8_safetensors
    checks.check_safetensors_size(predicted(fp32) * 1.15, name="ex", path=path)
    out = capsys.readouterr().out
    assert checks.outcomes["ex"] is False and "off by +" in out and "69,760 int8 weight elements at 1 byte" in out
    checks.check_safetensors_size("big", name="ex", path=path)
    assert "expected a number of bytes" in capsys.readouterr().out


# --- where the weight's scale lives ---------------------------------------------------------------------------

def test_weight_scale_passes_the_packed_weight(strict):
    def weight_scale(layer):
        weight = layer.weight()
        if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            return weight.q_scale()
        return weight.q_per_channel_scales()

    checks.check_weight_scale(weight_scale, name="ex")
    assert checks.outcomes["ex"] is True


@pytest.mark.parametrize("answer, hint", [
    (lambda layer: layer.scale, "is the output scale"),
    (lambda layer: layer.weight().q_scale(), "q_per_channel_scales()"),
    (lambda layer: 0.01, "wrong for a torch.per_tensor_affine weight"),
])
def test_weight_scale_hints(lenient, capsys, answer, hint):
    checks.check_weight_scale(answer, name="ex")
    assert checks.outcomes["ex"] is False and hint in capsys.readouterr().out
