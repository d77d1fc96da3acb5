"""helpers.smoothquant: SmoothQuant by hand keeps the fp32 function and flattens an outlier channel."""

import copy

import pytest
import torch

from helpers import models, smoothquant

TEXTS = ["a fine film", "dull and long", "I loved every minute of it", "a waste of time", "not bad at all",
         "the plot makes no sense"]


@pytest.fixture(scope="module")
def tiny(make_tiny_bert):
    return make_tiny_bert(logit_scale=20.0, max_position_embeddings=32)


@pytest.fixture(scope="module")
def batches(course_tokenizer):
    return [models.encode(course_tokenizer, TEXTS[i:i + 2], 16) for i in range(0, len(TEXTS), 2)]


def fp32_logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_smoothquant_keeps_the_fp32_function_and_flattens_channel_peaks(tiny, batches):
    names = smoothquant.ffn_output_layers(tiny)
    with torch.no_grad():  # plant a 40x outlier channel in the GELU output feeding layer 0's output.dense
        tiny_outlier = copy.deepcopy(tiny)
        tiny_outlier.bert.encoder.layer[0].intermediate.dense.weight[7].mul_(40.0)
    smoothed = smoothquant.smooth_ffn_output(tiny_outlier, batches, alpha=0.5)
    assert all(isinstance(smoothed.get_submodule(n), smoothquant.SmoothedLinear) for n in names)
    for batch in batches:
        assert torch.allclose(fp32_logits(smoothed, batch), fp32_logits(tiny_outlier, batch), atol=1e-4, rtol=0)
    before = smoothquant.input_channel_absmax(tiny_outlier, names[:1], batches)[names[0]]
    layer = smoothed.get_submodule(names[0])
    after = before * layer.inv_scale  # the smoothed Linear's actual input, per channel
    assert (after.max() / after.median()) < 0.5 * (before.max() / before.median())
    with pytest.raises(ValueError, match="alpha"):
        smoothquant.smoothing_scale(before, layer.linear.weight, alpha=1.5)

