"""helpers.pt2e: static int8 through torch.export + X86InductorQuantizer on a tiny BERT (eager attention).

Export + prepare + calibrate + convert stays close to fp32 and the observers saw the calibration data; the compiled
program runs and agrees with the converted graph; the static-shape guard names both shapes; layers kept in fp32
stay fp32; SmoothQuant by hand leaves the fp32 function unchanged and flattens the input's channel peaks.
"""

import copy

import pytest
import torch

from helpers import cpu, pt2e, smoothquant

TEXTS = ["a fine film", "dull and long", "I loved every minute of it", "a waste of time", "not bad at all",
         "great cast, weak plot", "the best film this year", "boring", "I laughed and cried", "never again",
         "a quiet masterpiece", "too long by an hour"]
BATCH, SEQ = 4, 16


@pytest.fixture(scope="module")
def tiny(make_tiny_bert):
    return make_tiny_bert(logit_scale=20.0, max_position_embeddings=32)


@pytest.fixture(scope="module")
def batches(course_tokenizer):
    return pt2e.calibration_batches(course_tokenizer, TEXTS, n_batches=3, batch_size=BATCH, seq_len=SEQ)


def fp32_logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.fixture(scope="module")
def prepared(tiny, batches):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    model = pt2e.eager_attention(copy.deepcopy(tiny))
    graph = pt2e.export(model, batches[0]).module()
    observed = prepare_pt2e(graph, pt2e.make_quantizer())
    before = pt2e.observer_table(observed, first=50)
    assert pt2e.calibrate(observed, batches, progress=False) == len(batches)
    return observed, before


@pytest.fixture(scope="module")
def converted(prepared):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    return convert_pt2e(copy.deepcopy(prepared[0]))


def test_export_takes_input_ids_and_attention_mask_positionally(tiny, batches):
    program = pt2e.export(tiny, batches[0])
    inputs = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    assert inputs == list(pt2e.INPUT_NAMES)
    assert torch.allclose(program.module()(*pt2e.positional(batches[0])), fp32_logits(tiny, batches[0]), atol=1e-5)


def test_dynamic_shapes_export_serves_other_shapes(tiny, batches, course_tokenizer):
    converted = pt2e.quantize_static(tiny, batches[:1], dynamic_shapes=True)
    other = pt2e.calibration_batches(course_tokenizer, TEXTS, 1, 3, 24)[0]  # another batch and seq
    reference = fp32_logits(tiny, other)
    logits = converted(*pt2e.positional(other))
    assert logits.shape == (3, 2) and (logits - reference).abs().max() < 0.1 * reference.abs().max()
    with pytest.raises(ValueError, match="attention is 'eager' or 'sdpa'"):
        pt2e.quantize_static(tiny, batches[:1], attention="flash")


def test_observers_saw_the_calibration_data(prepared, tiny, batches):
    observed, before = prepared
    after = pt2e.observer_table(observed, first=50)
    assert {r["type"] for r in after} >= {"HistogramObserver", "PerChannelMinMaxObserver"}
    activation = [r for r in after if r["type"] == "HistogramObserver"]
    assert all(r["min seen"] is None for r in before if r["type"] == "HistogramObserver")  # nothing seen yet
    assert all(r["min seen"] < r["max seen"] for r in activation)
    # the first activation observer watches the embeddings' LayerNorm output: it saw exactly that range
    seen = []
    hook = tiny.bert.embeddings.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    try:
        for b in batches:
            fp32_logits(tiny, b)
    finally:
        hook.remove()
    everything = torch.cat(seen)
    first = activation[0]
    assert first["min seen"] == pytest.approx(everything.min().item(), abs=1e-5)
    assert first["max seen"] == pytest.approx(everything.max().item(), abs=1e-5)


def test_converted_program_is_close_to_fp32(converted, tiny, batches):
    ops = {str(n.target) for n in converted.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in op for op in ops) and any("dequantize_per_channel" in op for op in ops)
    for batch in batches:
        reference, logits = fp32_logits(tiny, batch), converted(*pt2e.positional(batch))
        scale = reference.abs().max().item()
        assert (logits - reference).abs().max().item() < 0.1 * scale
        assert torch.equal(logits.argmax(1), reference.argmax(1))


def test_program_bytes_counts_int8_weights(make_tiny_bert):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    wide = pt2e.eager_attention(make_tiny_bert(vocab_size=500, hidden_size=128, intermediate_size=256,
                                               max_position_embeddings=32))
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(0, 500, (BATCH, SEQ), generator=generator),
             "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long)}
    graph = pt2e.export(wide, batch).module()
    fp32 = pt2e.program_bytes(graph, batch)
    observed = prepare_pt2e(graph, pt2e.make_quantizer())
    pt2e.calibrate(observed, [batch], progress=False)
    converted = convert_pt2e(observed)
    linear_weights = sum(m.weight.numel() for m in wide.modules() if isinstance(m, torch.nn.Linear))
    assert pt2e.drop_unused_weights(copy.deepcopy(converted)) >= 4 * linear_weights  # the fp32 originals
    saved = fp32 - pt2e.program_bytes(converted, batch)
    # 4 -> 1 byte per weight, minus per-channel scales and zero points and a few KB of archive per tensor
    assert 0.75 * 3 * linear_weights < saved < 3 * linear_weights


def test_keep_fp32_leaves_the_named_layers_unquantized(tiny, batches):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    kept = smoothquant.ffn_output_layers(tiny)
    assert kept == ["bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense"]

    def int8_weights(keep):
        graph = pt2e.export(pt2e.eager_attention(tiny), batches[0]).module()
        observed = prepare_pt2e(graph, pt2e.make_quantizer(keep_fp32=keep))
        pt2e.calibrate(observed, batches[:1], progress=False)
        return sum(1 for n in convert_pt2e(observed).graph.nodes if "dequantize_per_channel" in str(n.target))

    assert int8_weights(()) - int8_weights(kept) == len(kept)


def test_quantization_config_observers():
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver

    def observer_of(config):
        return config.input_activation.observer_or_fake_quant_ctr.p.func

    assert observer_of(pt2e.quantization_config()) is HistogramObserver  # the x86 default
    assert observer_of(pt2e.quantization_config(observer="minmax")) is MinMaxObserver
    assert pt2e.quantization_config(dynamic=True).input_activation.is_dynamic
    with pytest.raises(ValueError, match="unknown observer 'percentile'"):
        pt2e.quantization_config(observer="percentile")
    with pytest.raises(ValueError, match="dynamic config"):
        pt2e.quantization_config(dynamic=True, observer="minmax")


def test_vnni_detection_and_reduce_range():
    assert cpu.has_int8_dot({"avx2": True, "avx512_vnni": True}) and cpu.has_int8_dot({"avx_vnni": True})
    assert all(cpu.has_int8_dot({flag: True}) for flag in ("amx_int8", "asimddp", "i8mm"))
    assert not cpu.has_int8_dot({"avx2": True, "avx512f": True}) and not cpu.has_int8_dot({"asimd": True})
    assert pt2e.quantization_config().input_activation.quant_max == 255  # torchao's default: 8-bit activations
    for observer in pt2e.OBSERVERS:
        assert pt2e.quantization_config(observer=observer, reduce_range=True).input_activation.quant_max == 127


def test_calibration_batches_are_full_and_padded(course_tokenizer):
    got = pt2e.calibration_batches(course_tokenizer, TEXTS, 2, 5, 12)
    assert [tuple(b["input_ids"].shape) for b in got] == [(5, 12), (5, 12)]
    with pytest.raises(ValueError, match="need 15 texts, got 12"):
        pt2e.calibration_batches(course_tokenizer, TEXTS, 3, 5, 12)


# --- the static-shape guard (no compile needed: a stand-in for the compiled program) ----------------------------

def test_static_shape_program_pads_rows_and_guards_shapes():
    calls = []

    def compiled(input_ids, attention_mask):
        calls.append(tuple(input_ids.shape))
        return torch.stack([input_ids.sum(1), attention_mask.sum(1)], 1).float()

    assert pt2e.CompiledClassifier(compiled).shape is None  # dynamic shapes: no guard
    program = pt2e.CompiledClassifier(compiled, batch_size=4, seq_len=6)
    ids = torch.arange(12).reshape(2, 6)
    out = program({"input_ids": ids, "attention_mask": torch.ones(2, 6, dtype=torch.long)})
    assert calls == [(4, 6)]  # padded to the static batch
    assert out.tolist() == [[15.0, 6.0], [51.0, 6.0]]  # only the real rows come back
    for shape in [(2, 8), (5, 6)]:
        with pytest.raises(ValueError, match=rf"batch 4 x seq 6, got batch {shape[0]} x seq {shape[1]}"):
            program((torch.zeros(shape, dtype=torch.long), torch.ones(shape, dtype=torch.long)))


def test_converted_graph_scores_a_short_last_batch(converted, batches):
    scorer = pt2e.static_scorer(converted, batches[0])
    assert scorer.shape == tuple(batches[0]["input_ids"].shape)
    short = {k: v[:3] for k, v in batches[1].items()}
    with pytest.raises(AssertionError):  # the exported program guards its batch size
        converted(*pt2e.positional(short))
    with torch.no_grad():
        full = converted(*pt2e.positional(batches[1]))
    assert torch.allclose(scorer(short), full[:3], atol=1e-5)  # static scales: the padding rows change nothing


def test_inductor_freezing_is_set_inside_and_restored():
    import torch._inductor.config as inductor_config

    before = inductor_config.freezing
    with pt2e.inductor_freezing():
        assert inductor_config.freezing is True
    assert inductor_config.freezing == before
    with pytest.raises(RuntimeError), pt2e.inductor_freezing():
        raise RuntimeError("restored even on error")
    assert inductor_config.freezing == before


# --- SmoothQuant by hand -----------------------------------------------------------------------------------------

# --- the compiled path (Inductor, freezing): the slowest test here ----------------------------------------------

def test_build_static_int8_compiles_and_matches_the_converted_graph(tiny, batches):
    # without VNNI, 8-bit activations can saturate oneDNN's int16 pair sums; 7 bits make the kernels exact
    built = pt2e.build_static_int8(tiny, batches, reduce_range=not cpu.has_int8_dot(cpu.features()))
    assert built.shape == (BATCH, SEQ) and built.calibration_batches == len(batches)
    assert built.size_bytes > 0 and built.compile_seconds > 0
    with torch.no_grad():
        for batch in batches:
            logits = built.program(batch)
            # the int8 kernels compute what the converted q/dq graph describes
            assert torch.allclose(logits, built.converted(*pt2e.positional(batch)), atol=1e-3 * logits.abs().max())
            assert torch.equal(logits.argmax(1), fp32_logits(tiny, batch).argmax(1))
        short = {k: v[:3] for k, v in batches[0].items()}  # a short last batch is padded, not recompiled
        assert torch.equal(built.program(short), built.program(batches[0])[:3])
