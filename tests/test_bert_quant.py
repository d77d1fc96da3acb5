import pytest
import torch
from torch import nn

from helpers import bert_quant, deprecations, measure
from helpers import engine as engine_mod

deprecations.silence_known()
DQLinear = torch.ao.nn.quantized.dynamic.Linear
QEmbedding = torch.ao.nn.quantized.Embedding
LAYERS = 3


@pytest.fixture(scope="module")
def tiny(make_tiny_bert):
    """The shared tiny BERT, at 3 layers, hidden 64 and a 4000-word vocabulary (large enough to dominate the file;
    ``ToyTokenizer`` hashes words into it)."""
    return make_tiny_bert(vocab_size=4000, hidden_size=64, num_hidden_layers=LAYERS, intermediate_size=128,
                          max_position_embeddings=32)


class ToyTokenizer:
    """Maps each word to an id by hashing; enough to run the classifier on text."""

    def __call__(self, texts, padding, truncation, max_length, return_tensors):
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, text in enumerate(texts):
            words = [1 + sum(map(ord, w)) % 3999 for w in text.split()][:max_length]
            ids[row, :len(words)] = torch.tensor(words)
            mask[row, :len(words)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def linear_types(model):
    return {name: type(m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, DQLinear))}


def test_groups_partition_the_linear_layers(tiny):
    groups = bert_quant.linear_groups(tiny)
    assert len(groups["all"]) == 6 * LAYERS + 2
    assert groups["head"] == ["bert.pooler.dense", "classifier"] and groups["classifier"] == ["classifier"]
    assert len(groups["attention"]) == 4 * LAYERS and len(groups["ffn"]) == 2 * LAYERS
    assert sorted(groups["attention"] + groups["ffn"] + groups["head"]) == sorted(groups["all"])
    assert groups["first_block"] == groups["block0"] and groups["last_block"] == groups[f"block{LAYERS - 1}"]
    assert all(n.startswith("bert.encoder.layer.0.") for n in groups["block0"]) and len(groups["block0"]) == 6
    assert "bert.encoder.layer.1.attention.output.dense" in groups["attention"]
    assert "bert.encoder.layer.1.output.dense" in groups["ffn"]


def test_groups_need_linear_layers():
    with pytest.raises(ValueError, match="no nn.Linear"):
        bert_quant.linear_groups(nn.Sequential(nn.ReLU()))


def test_quantize_swaps_every_linear_and_leaves_the_original(tiny):
    q = bert_quant.quantize_model(tiny)
    assert all(t is DQLinear for t in linear_types(q).values())
    assert all(t is nn.Linear for t in linear_types(tiny).values())  # the original is untouched
    assert isinstance(q.bert.embeddings.word_embeddings, nn.Embedding)  # {nn.Linear} leaves embeddings fp32
    census = bert_quant.module_census(q)
    assert census["torch.ao.nn.quantized.dynamic.Linear"] == 6 * LAYERS + 2 and census["Linear"] == 0
    assert census["Embedding"] == 3


@pytest.mark.parametrize("group", ["classifier", "head", "first_block", "last_block", "attention", "ffn"])
def test_keep_group_in_fp32(tiny, group):
    kept = set(bert_quant.linear_groups(tiny)[group])
    types = linear_types(bert_quant.quantize_model(tiny, keep_fp32=group))
    assert {n for n, t in types.items() if t is nn.Linear} == kept
    assert all(t is DQLinear for n, t in types.items() if n not in kept)


def test_keep_several_groups_and_bad_names(tiny):
    types = linear_types(bert_quant.quantize_model(tiny, keep_fp32=["head", "block1"]))
    assert sum(t is nn.Linear for t in types.values()) == 2 + 6
    with pytest.raises(ValueError, match=r"unknown layer group 'decoder'; choose from \[.*'attention'"):
        bert_quant.quantize_model(tiny, keep_fp32="decoder")
    with pytest.raises(ValueError, match="nothing left to quantize"):
        bert_quant.quantize_model(tiny, keep_fp32="all")


def test_per_channel_weights(tiny):
    q = bert_quant.quantize_model(tiny, per_channel=True)
    weight = q.bert.encoder.layer[0].intermediate.dense.weight()
    assert weight.qscheme() == torch.per_channel_affine and weight.q_per_channel_scales().shape == (128,)
    assert bert_quant.quantize_model(tiny).classifier.weight().qscheme() == torch.per_tensor_affine


def test_quantized_outputs_stay_close(tiny):
    x = torch.randint(1, 4000, (4, 16))
    with torch.inference_mode():
        ref = tiny(input_ids=x).logits
        for model in (bert_quant.quantize_model(tiny), bert_quant.quantize_model(tiny, embeddings=True),
                      bert_quant.quantize_model(tiny, per_channel=True)):
            out = model(input_ids=x).logits
            assert out.shape == ref.shape and measure.max_abs_diff(out, ref) < 0.1


def test_size_breakdown_and_ratios(tiny):
    fp32 = bert_quant.size_breakdown(tiny)
    assert set(fp32) == {"embeddings", "encoder", "head", "total"}
    assert fp32["total"] == measure.state_dict_bytes(tiny)
    assert abs(sum(fp32[p] for p in bert_quant.BERT_PARTS) - fp32["total"]) < 0.05 * fp32["total"]
    words = 4000 * 64 * 4
    assert words < fp32["embeddings"] < 1.2 * words
    q = bert_quant.size_breakdown(bert_quant.quantize_model(tiny))
    assert q["embeddings"] == pytest.approx(fp32["embeddings"], rel=0.01)  # left fp32
    assert q["encoder"] < 0.40 * fp32["encoder"]  # int8 weights, fp32 biases and LayerNorms
    qe = bert_quant.size_breakdown(bert_quant.quantize_model(tiny, embeddings=True))
    assert qe["embeddings"] < 0.35 * fp32["embeddings"]  # int8 rows plus a float scale and offset per row
    assert qe["total"] < q["total"] < fp32["total"]


def test_size_breakdown_unknown_parts(tiny):
    with pytest.raises(ValueError, match="no state_dict keys start with"):
        bert_quant.size_breakdown(tiny, parts={"decoder": ("decoder.",)})
    sizes = bert_quant.size_breakdown(tiny, parts={"embeddings": ("bert.embeddings.",)})
    assert sizes["other"] > sizes["embeddings"] / 10  # the rest is reported, not dropped


@pytest.mark.parametrize("engine", [e for e in torch.backends.quantized.supported_engines if e != "none"])
def test_using_engine_restores_and_quantizes(tiny, engine):
    before = torch.backends.quantized.engine
    with engine_mod.using(engine) as active:
        assert active == engine == torch.backends.quantized.engine
    assert torch.backends.quantized.engine == before
    q = bert_quant.quantize_model(tiny, engine=engine)
    with engine_mod.using(engine), torch.inference_mode():
        assert q(input_ids=torch.randint(1, 4000, (2, 8))).logits.shape == (2, 2)


def test_using_engine_unknown():
    with pytest.raises(ValueError, match="not supported by this PyTorch build; choose one of"):
        with engine_mod.using("tpu"):
            pass


def test_activation_peaks_rows_groups_and_values(tiny):
    ids = torch.randint(1, 4000, (2, 8))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    rows = bert_quant.activation_peaks(tiny, batch)
    assert [r["layer"] for r in rows] == bert_quant.linear_groups(tiny)["all"]
    groups = {r["layer"]: r["group"] for r in rows}
    assert groups["bert.encoder.layer.0.output.dense"] == "ffn"
    assert groups["bert.encoder.layer.0.attention.output.dense"] == "attention"
    assert groups["classifier"] == "head"
    assert all(r["peak / std"] >= 1 and r["int8 levels per std"] == pytest.approx(127 / r["peak / std"]) for r in rows)
    assert not tiny.bert.encoder.layer[0].output.dense._forward_hooks  # the hooks are removed again


def test_activation_peaks_measures_an_outlier_exactly():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.ones(5, 4)
    x[0, 0] = 40.0  # one outlier
    (first, second) = bert_quant.activation_peaks(model, x)
    assert first["group"] == "head" and first["peak / std"] == pytest.approx((40.0 / x.std()).item())
    assert second["layer"] == "2"


# --- qconfig_spec: the dict quantize_model hands to quantize_dynamic -------------------------------------------

def test_qconfig_spec_names_every_quantized_module(tiny):
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        float_qparams_weight_only_qconfig,
        per_channel_dynamic_qconfig,
    )

    groups = bert_quant.linear_groups(tiny)
    spec = bert_quant.qconfig_spec(tiny, keep_fp32="block1")
    assert set(spec) == set(groups["all"]) - set(groups["block1"])
    assert all(q is default_dynamic_qconfig for q in spec.values())
    assert set(bert_quant.qconfig_spec(tiny, per_channel=True).values()) == {per_channel_dynamic_qconfig}
    with_tables = bert_quant.qconfig_spec(tiny, embeddings=True)
    tables = {n for n, m in tiny.named_modules() if isinstance(m, nn.Embedding)}
    assert tables and all(with_tables[n] is float_qparams_weight_only_qconfig for n in tables)


def test_quantize_model_is_quantize_dynamic_with_the_spec(tiny):
    """The wrapper and the explicit call give the same model: same float layers, bit-identical outputs."""
    explicit = torch.ao.quantization.quantize_dynamic(tiny, bert_quant.qconfig_spec(tiny, keep_fp32="head"),
                                                      dtype=torch.qint8)
    wrapped = bert_quant.quantize_model(tiny, keep_fp32="head")
    x = torch.randint(1, 4000, (3, 10))
    with torch.inference_mode():
        assert torch.equal(explicit(input_ids=x).logits, wrapped(input_ids=x).logits)
    assert bert_quant.float_linears(explicit) == bert_quant.float_linears(wrapped) == ["bert.pooler.dense",
                                                                                        "classifier"]


def test_float_linears(tiny):
    assert bert_quant.float_linears(tiny) == bert_quant.linear_groups(tiny)["all"]
    assert bert_quant.float_linears(bert_quant.quantize_model(tiny)) == []
    kept = bert_quant.float_linears(bert_quant.quantize_model(tiny, keep_fp32="first_block"))
    assert kept == bert_quant.linear_groups(tiny)["block0"]


def test_int8_embeddings_need_contiguous_indices(tiny):
    """Without token_type_ids BERT passes an expanded buffer, which the int8 lookup rejects; quantize_model's
    pre-hook makes the indices contiguous, a bare quantize_dynamic model raises the kernel's error."""
    x = torch.randint(1, 4000, (2, 8))
    bare = torch.ao.quantization.quantize_dynamic(tiny, bert_quant.qconfig_spec(tiny, embeddings=True),
                                                  dtype=torch.qint8)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="contiguous"):
            bare(input_ids=x)
        assert bare(input_ids=x, token_type_ids=torch.zeros_like(x)).logits.shape == (2, 2)
        assert bert_quant.quantize_model(tiny, embeddings=True)(input_ids=x).logits.shape == (2, 2)


# --- where the error comes from --------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", [e for e in torch.backends.quantized.supported_engines if e != "none"])
def test_per_batch_activation_emulation_matches_the_dynamic_linear(engine):
    """A dynamic int8 Linear equals fp32 on (7-bit per-batch activations) x (its int8 weight) on fbgemm, x86 and
    onednn (the module passes reduce_range=True); qnnpack ignores reduce_range and matches 8 bits."""
    torch.manual_seed(0)
    layer = nn.Linear(48, 24)
    x = torch.randn(2, 5, 48) * 3
    with engine_mod.using(engine):
        q = torch.ao.quantization.quantize_dynamic(nn.Sequential(layer), {nn.Linear}, dtype=torch.qint8)[0]
        with torch.inference_mode():
            out = q(x)
    weight = q.weight().dequantize()
    bits = 8 if engine == "qnnpack" else 7
    emulated = nn.functional.linear(bert_quant.fake_quant_activation_per_batch(x, bits), weight, layer.bias)
    other = nn.functional.linear(bert_quant.fake_quant_activation_per_batch(x, 15 - bits), weight, layer.bias)
    assert measure.max_abs_diff(out, emulated) < 1e-4
    assert measure.max_abs_diff(out, other) > 100 * measure.max_abs_diff(out, emulated) + 1e-3


def test_per_batch_scale_depends_on_the_other_sentences():
    """One scale per batch: a sentence quantized alone and next to a sentence with a large outlier differ."""
    quiet, loud = torch.randn(1, 6, 16), torch.randn(1, 6, 16)
    loud[0, 0, 0] = 50.0
    alone = bert_quant.fake_quant_activation_per_batch(quiet, 7)
    together = bert_quant.fake_quant_activation_per_batch(torch.cat([quiet, loud]), 7)[:1]
    assert (together - quiet).abs().mean() > 5 * (alone - quiet).abs().mean()


def test_error_sources_orders_the_ingredients(tiny):
    ids = torch.randint(1, 4000, (4, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    rows = bert_quant.error_sources(tiny, batch)
    assert [r["layer"] for r in rows] == bert_quant.linear_groups(tiny)["all"]
    for r in rows:
        assert all(0 < r[s] < 0.5 for s in bert_quant.ERROR_SOURCES)
        assert r["activations, 8-bit per batch"] < r["activations, 7-bit per batch"]  # twice the levels
    mean = {s: sum(r[s] for r in rows) / len(rows) for s in bert_quant.ERROR_SOURCES}
    assert mean["activations, 7-bit per batch"] == pytest.approx(2 * mean["activations, 8-bit per batch"], rel=0.3)
    summary = {r["group"]: r for r in bert_quant.summarize_error_sources(rows)}
    assert summary["all layers"]["layers"] == len(rows) and summary["ffn"]["layers"] == 2 * LAYERS
    assert summary["all layers"]["weights, per tensor"] == pytest.approx(mean["weights, per tensor"])
    with pytest.raises(ValueError, match="no rows"):
        bert_quant.summarize_error_sources([])


def test_error_sources_weight_error_matches_quantize_dynamic():
    """The per-tensor weight ingredient uses the same scale quantize_dynamic stores."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(32, 16))
    x = torch.randn(8, 32)
    (row,) = bert_quant.error_sources(model, x)
    q = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)[0]
    y = model(x).detach()
    expected = (nn.functional.linear(x, q.weight().dequantize(), model[0].bias) - y).norm() / y.norm()
    assert row["weights, per tensor"] == pytest.approx(expected.item(), rel=1e-4)


def test_error_sources_per_channel_helps_when_rows_differ_in_range():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(32, 16))
    with torch.no_grad():
        model[0].weight[:1] *= 100  # one output channel 100x larger: one scale per tensor is coarse for the rest
    (row,) = bert_quant.error_sources(model, torch.randn(8, 32))
    assert row["weights, per channel"] < row["weights, per tensor"] / 2
