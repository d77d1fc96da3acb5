import pytest
import torch

from helpers import engine


@pytest.mark.parametrize("supported, machine, expected", [
    (["qnnpack", "onednn", "x86", "fbgemm"], "x86_64", "x86"),
    (["qnnpack", "fbgemm"], "x86_64", "fbgemm"),          # older builds without the x86 engine
    (["qnnpack", "none"], "arm64", "qnnpack"),            # macOS on Apple silicon
    (["qnnpack", "onednn", "none"], "aarch64", "qnnpack"),  # Linux aarch64
    (["none", "qnnpack"], "AMD64", "qnnpack"),            # x86 with only qnnpack: the last resort
])
def test_choose_engine_per_platform(supported, machine, expected):
    choice = engine.choose_engine(supported, machine)
    assert choice.engine == expected
    assert machine in choice.reason


def test_fallback_reason_names_what_is_missing():
    choice = engine.choose_engine(["qnnpack", "fbgemm"], "x86_64")
    assert "fallback" in choice.reason and "x86" in choice.reason


@pytest.mark.parametrize("supported", [[], ["none"]])
def test_no_engine_raises_with_fix(supported):
    with pytest.raises(engine.NoQuantizedEngineError, match=r"NoQEngine.*pip install torch==2.13.0"):
        engine.choose_engine(supported, "arm64")


def test_override_wins_and_is_validated():
    assert engine.choose_engine(["qnnpack", "x86"], "x86_64", override="qnnpack").engine == "qnnpack"
    with pytest.raises(ValueError, match="'fbgemm' was requested.*supports \\['qnnpack'\\]"):
        engine.choose_engine(["qnnpack", "none"], "arm64", override="fbgemm")


def test_select_engine_sets_torch_engine(monkeypatch):
    monkeypatch.delenv(engine.ENGINE_ENV_VAR, raising=False)
    before = torch.backends.quantized.engine
    try:
        choice = engine.select_engine()
        assert torch.backends.quantized.engine == choice.engine
        assert choice.engine in torch.backends.quantized.supported_engines
    finally:
        torch.backends.quantized.engine = before


def test_select_engine_simulated_macos(monkeypatch):
    class FakeQuantized:
        supported_engines = ["qnnpack", "none"]
        engine = "none"

    fake = FakeQuantized()
    monkeypatch.setattr(engine.torch.backends, "quantized", fake)
    monkeypatch.setattr(engine.platform, "machine", lambda: "arm64")
    monkeypatch.delenv(engine.ENGINE_ENV_VAR, raising=False)
    choice = engine.select_engine()
    assert choice.engine == "qnnpack" and fake.engine == "qnnpack"


def test_select_engine_env_override(monkeypatch):
    monkeypatch.setenv(engine.ENGINE_ENV_VAR, "qnnpack")
    before = torch.backends.quantized.engine
    try:
        assert engine.select_engine().engine == "qnnpack"
    finally:
        torch.backends.quantized.engine = before


def test_cpu_features_keys():
    feats = engine.cpu_features()
    for key in ("avx2", "avx512_vnni", "amx_int8", "machine", "torch_cpu_capability"):
        assert key in feats


def test_cpu_features_from_a_faked_cpuinfo(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Fake Xeon\n"
                    "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse2\n")
    feats = engine.cpu_features(fake)
    assert set(feats) == {"machine", "torch_cpu_capability", *engine.NOTABLE_CPU_FLAGS}
    assert feats["avx2"] and feats["avx512_vnni"] and feats["avx512_bf16"] and feats["amx_int8"] and feats["amx_bf16"]
    assert not feats["avx_vnni"] and not feats["neon/asimd"]
    arm = tmp_path / "cpuinfo-arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\n")
    feats = engine.cpu_features(arm)
    assert feats["neon/asimd"] and not feats["avx2"] and not feats["amx_int8"]
    assert not any(v for k, v in engine.cpu_features(tmp_path / "missing").items()
                   if k not in ("machine", "torch_cpu_capability"))


def test_using_restores_and_rejects_unknown():
    before = torch.backends.quantized.engine
    with engine.using("qnnpack") as active:
        assert active == torch.backends.quantized.engine == "qnnpack"
    assert torch.backends.quantized.engine == before
    with engine.using(None) as active:
        assert active == before
    with pytest.raises(ValueError, match="'tpu' is not supported by this PyTorch build; choose one of"):
        with engine.using("tpu"):
            pass
    assert torch.backends.quantized.engine == before


def _toy_lstm():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.LSTM(8, 8, 1))


def _quantize(model):
    from helpers import deprecations

    deprecations.silence_known()
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)


def test_simulate_build_reproduces_the_notes_crash_and_restores_everything():
    real_backend, engine_before = torch.backends.quantized, torch.backends.quantized.engine
    real_prepack = torch.ops.quantized.linear_prepack
    with engine.simulate_build() as fake:
        assert torch.backends.quantized is fake
        assert torch.backends.quantized.supported_engines == ["qnnpack", "none"]
        assert torch.backends.quantized.engine == "none"
        with pytest.raises(RuntimeError, match=r"^Didn't find engine for operation quantized::linear_prepack NoQEngine$"):
            _quantize(_toy_lstm())
    assert torch.backends.quantized is real_backend and torch.backends.quantized.engine == engine_before
    assert torch.ops.quantized.linear_prepack is real_prepack
    assert type(_quantize(_toy_lstm())[0]) is torch.ao.nn.quantized.dynamic.LSTM  # the real op works again


def test_simulate_build_accepts_the_fix_and_refuses_engines_it_lacks():
    before = torch.backends.quantized.engine
    with engine.simulate_build(["qnnpack", "none"], "none"):
        with pytest.raises(RuntimeError, match="quantized engine X86 is not supported"):  # torch's own wording
            torch.backends.quantized.engine = "x86"
        torch.backends.quantized.engine = "qnnpack"  # the fix on the notes' machine
        quantized = _quantize(_toy_lstm())
        assert type(quantized[0]) is torch.ao.nn.quantized.dynamic.LSTM
        assert torch.backends.quantized.engine == "qnnpack"
    assert torch.backends.quantized.engine == before


def test_simulate_build_restores_after_an_error_and_validates_its_arguments():
    before = torch.backends.quantized.engine
    with pytest.raises(ZeroDivisionError):
        with engine.simulate_build():
            torch.backends.quantized.engine = "qnnpack"
            1 / 0
    assert torch.backends.quantized.engine == before and not isinstance(torch.backends.quantized,
                                                                       engine._SimulatedBackend)
    with pytest.raises(ValueError, match="active engine must be in the list"):
        with engine.simulate_build(["qnnpack"], "none"):
            pass
    with pytest.raises(ValueError, match="must exist in this build"):
        with engine.simulate_build(["tpu", "none"], "none"):
            pass
