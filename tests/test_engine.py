import pytest
import torch

from helpers import engine


@pytest.mark.parametrize("supported, machine, system, expected", [
    (["qnnpack", "onednn", "x86", "fbgemm"], "x86_64", "linux", "x86"),
    (["qnnpack", "fbgemm"], "x86_64", "linux", "fbgemm"),              # older builds without the x86 engine
    (["qnnpack", "onednn", "x86", "fbgemm"], "AMD64", "win32", "x86"),  # Windows
    (["qnnpack", "none"], "arm64", "darwin", "qnnpack"),                # macOS on Apple silicon
    (["qnnpack", "onednn", "none"], "arm64", "darwin", "qnnpack"),      # ... even where onednn is listed
    (["qnnpack", "onednn", "none"], "aarch64", "linux", "onednn"),      # Linux aarch64: oneDNN + Arm Compute Library
    (["qnnpack", "none"], "aarch64", "linux", "qnnpack"),               # ... a build without it
    (["none", "qnnpack"], "AMD64", "win32", "qnnpack"),                 # x86 with only qnnpack: the last resort
])
def test_choose_engine_per_platform(supported, machine, system, expected):
    choice = engine.choose_engine(supported, machine, system=system)
    assert choice.engine == expected
    assert machine in choice.reason and system in choice.reason


def test_the_reason_says_why_the_engine_is_the_right_one_there():
    reason = engine.choose_engine(["qnnpack", "onednn", "none"], "aarch64", system="linux").reason
    assert reason.startswith("first choice on aarch64 (linux): onednn (Arm Compute Library) is PyTorch's fast "
                             "dynamic int8 Linear on Linux aarch64")
    assert "Apple silicon" in engine.choose_engine(["qnnpack", "none"], "arm64", system="darwin").reason


def test_fallback_reason_names_what_is_missing():
    choice = engine.choose_engine(["qnnpack", "fbgemm"], "x86_64", system="linux")
    assert choice.reason.startswith("fallback #1 (x86 missing) on x86_64 (linux)")


@pytest.mark.parametrize("supported", [[], ["none"]])
def test_no_engine_raises_with_fix(supported):
    with pytest.raises(engine.NoQuantizedEngineError, match=r"NoQEngine.*official PyTorch CPU build.*requirements"):
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
        no_engine = r"^Didn't find engine for operation quantized::linear_prepack NoQEngine$"
        with pytest.raises(RuntimeError, match=no_engine):
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
