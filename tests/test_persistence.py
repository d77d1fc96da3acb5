import json
import os
import shlex
import warnings

import pytest
import torch

from helpers import deprecations
from helpers import persistence as P
from helpers.paths import sha256_file

deprecations.silence_known()


def build_mlp():
    torch.manual_seed(0)  # the builder's own weights must not matter: the test below changes the seed on purpose
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()


def make_int8_mlp(seed=1):
    torch.manual_seed(seed)
    float_model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    return float_model, P.QuantSpec().apply(float_model)


def tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                      max_position_embeddings=32, num_labels=2)


def build_tiny_bert():
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification(tiny_bert_config()).eval()


@pytest.fixture()
def saved_mlp(tmp_path):
    _, q = make_int8_mlp()
    directory = tmp_path / "mlp"
    P.save_quantized(q, directory)
    return q, directory


def test_round_trip_is_bit_exact(saved_mlp):
    q, directory = saved_mlp
    x = torch.randn(8, 16)
    loaded = P.load_quantized(directory, build_mlp)
    assert torch.equal(q(x), loaded(x))
    for k, v in q.state_dict().items():
        w = loaded.state_dict()[k]
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, w), k
        elif isinstance(v, tuple):  # packed params: (int8 weight, bias)
            assert torch.equal(v[0].int_repr(), w[0].int_repr()) and v[0].q_scale() == w[0].q_scale(), k
            assert torch.equal(v[1], w[1]), k


def test_round_trip_tiny_bert_is_bit_exact(tmp_path):
    torch.manual_seed(3)
    q = P.QuantSpec().apply(build_tiny_bert())
    P.save_quantized(q, tmp_path / "bert", extra={"note": "tiny"})
    torch.manual_seed(99)  # a differently initialised builder: nothing of it may survive the load
    loaded = P.load_quantized(tmp_path / "bert", build_tiny_bert)
    ids = torch.randint(0, 64, (4, 12))
    mask = torch.ones_like(ids)
    mask[:, 9:] = 0
    with torch.no_grad():
        expected = q(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(expected, loaded(input_ids=ids, attention_mask=mask).logits)
    manifest = json.loads((tmp_path / "bert" / P.MANIFEST_FILE).read_text())
    assert manifest["quantized_layers"] == 2 * 6 + 2  # 6 Linear per layer, pooler, classifier
    assert manifest["extra"] == {"note": "tiny"}


def test_manifest_contents(saved_mlp):
    _, directory = saved_mlp
    m = json.loads((directory / P.MANIFEST_FILE).read_text())
    assert m["quantization"] == {"modules": ["torch.nn.Linear"], "dtype": "qint8",
                                 "method": "torch.ao.quantization.quantize_dynamic"}
    assert m["torch"] == torch.__version__ and m["engine"] == torch.backends.quantized.engine
    info = m["files"][P.WEIGHTS_FILE]
    assert info["sha256"] == P.sha256_file(directory / P.WEIGHTS_FILE)
    assert info["bytes"] == (directory / P.WEIGHTS_FILE).stat().st_size
    assert not list(directory.glob(".*.tmp"))  # atomic writes leave no temporary files behind


def test_save_refuses_float_model(tmp_path):
    with pytest.raises(P.NotQuantizedError, match="quantize it first"):
        P.save_quantized(build_mlp(), tmp_path / "x")
    assert not (tmp_path / "x" / P.MANIFEST_FILE).exists()


def test_float_checkpoint_where_quantized_expected(tmp_path):
    float_model, q = make_int8_mlp()
    with pytest.raises(P.FloatCheckpointError, match="float checkpoint"):
        P.load_strict(P.QuantSpec().apply(build_mlp()), float_model.state_dict())
    # and through the manifest route: a float state_dict that somebody put in place of the weights file
    P.save_quantized(q, tmp_path / "d")
    weights = tmp_path / "d" / P.WEIGHTS_FILE
    torch.save(float_model.state_dict(), weights)
    manifest = json.loads((tmp_path / "d" / P.MANIFEST_FILE).read_text())
    manifest["files"][P.WEIGHTS_FILE] = {"sha256": P.sha256_file(weights), "bytes": weights.stat().st_size}
    (tmp_path / "d" / P.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(P.FloatCheckpointError, match="float state_dict, not a dynamically quantized one"):
        P.load_quantized(tmp_path / "d", build_mlp)


def test_quantized_checkpoint_where_float_expected():
    _, q = make_int8_mlp()
    model = build_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(P.QuantizedCheckpointError, match="would stay randomly initialised"):
        P.load_strict(model, q.state_dict())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded


def test_quantized_checkpoint_into_tiny_bert_float():
    q = P.QuantSpec().apply(build_tiny_bert())
    with pytest.raises(P.QuantizedCheckpointError, match="14 int8 layers"):
        P.load_strict(build_tiny_bert(), q.state_dict())


def test_builder_returning_quantized_model_is_refused(saved_mlp):
    _, directory = saved_mlp
    with pytest.raises(P.QuantizedCheckpointError, match="already quantized"):
        P.load_quantized(directory, lambda: P.QuantSpec().apply(build_mlp()))


def test_other_architecture(saved_mlp):
    _, directory = saved_mlp
    def wider():
        return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))

    with pytest.raises(P.KeyMismatchError, match="could not be loaded"):
        P.load_quantized(directory, wider)
    def deeper():
        return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4),
                                   torch.nn.Linear(4, 4))

    with pytest.raises(P.KeyMismatchError, match="1 missing keys|2 missing keys|missing keys"):
        P.load_quantized(directory, deeper)


def test_truncated_file(saved_mlp):
    _, directory = saved_mlp
    weights = directory / P.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(P.CorruptCheckpointError, match="truncated"):
        P.load_quantized(directory, build_mlp)


def test_corrupted_file_without_manifest(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 300)
    with pytest.raises(P.CorruptCheckpointError, match="truncated or not a torch checkpoint"):
        P.load_state_file(bad)
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    good.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(P.CorruptCheckpointError):
        P.load_state_file(good)


def test_checksum_mismatch(saved_mlp):
    _, directory = saved_mlp
    weights = directory / P.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    weights.write_bytes(bytes(data))
    with pytest.raises(P.ChecksumMismatchError, match="modified or corrupted after saving"):
        P.load_quantized(directory, build_mlp)


def test_incompatible_torch_version(saved_mlp):
    _, directory = saved_mlp
    path = directory / P.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["torch"] = "2.5.1+cpu"
    path.write_text(json.dumps(manifest))
    with pytest.raises(P.IncompatibleVersionError, match=r"written by torch 2\.5\.1\+cpu.*Install torch==2\.5\.1"):
        P.load_quantized(directory, build_mlp)


def test_version_rule():
    P.check_torch_version("2.13.0", "2.13.1+cpu")  # same release line: fine
    with pytest.raises(P.IncompatibleVersionError):
        P.check_torch_version("2.12.0", "2.13.0")
    with pytest.raises(P.IncompatibleVersionError, match="cannot read"):
        P.check_torch_version("banana", "2.13.0")


def test_unknown_manifest_format(saved_mlp):
    _, directory = saved_mlp
    path = directory / P.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(P.IncompatibleVersionError, match="format version 99"):
        P.load_quantized(directory, build_mlp)
    path.write_text("{not json")
    with pytest.raises(P.CorruptCheckpointError, match="not valid JSON"):
        P.load_quantized(directory, build_mlp)


def test_missing_files(saved_mlp, tmp_path):
    _, directory = saved_mlp
    with pytest.raises(P.CheckpointMissingError, match="no checkpoint directory"):
        P.load_quantized(tmp_path / "nowhere", build_mlp)
    (directory / P.WEIGHTS_FILE).unlink()
    with pytest.raises(P.CheckpointMissingError, match="listed in the manifest but missing"):
        P.load_quantized(directory, build_mlp)
    (directory / P.MANIFEST_FILE).unlink()
    torch.save({}, directory / "pytorch_model.bin")
    with pytest.raises(P.CheckpointMissingError, match=r"manifest.json is missing.*pytorch_model\.bin"):
        P.load_quantized(directory, build_mlp)
    with pytest.raises(FileNotFoundError):  # the errors are also the built-in kinds callers may already catch
        P.load_state_file(directory / "nope.pt")


def test_another_engine_loads_with_a_warning(saved_mlp):
    """The file holds unpacked weights: another engine packs them again, so it loads (on an ARM laptop a file saved
    under x86 must not be a dead end), and says the logits may differ in the last bits."""
    q, directory = saved_mlp
    path = directory / P.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    family = P.KERNEL_FAMILY[manifest["engine"]]
    other = next(e for e in torch.backends.quantized.supported_engines if P.KERNEL_FAMILY.get(e, family) != family)
    manifest["engine"] = other
    path.write_text(json.dumps(manifest))
    with pytest.warns(P.EngineChangeWarning, match=f"saved under the '{other}' quantized engine"):
        loaded = P.load_quantized(directory, build_mlp)
    x = torch.randn(4, 16)
    assert torch.equal(q(x), loaded(x))  # the same engine as the saving process here: the same kernels
    same_kernels = [e for e in torch.backends.quantized.supported_engines if P.KERNEL_FAMILY.get(e) == family]
    manifest["engine"] = same_kernels[-1]  # x86 and fbgemm share fbgemm's dynamic Linear: nothing to warn about
    path.write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("error", P.EngineChangeWarning)
        P.load_quantized(directory, build_mlp)


def test_pickled_module_is_refused(tmp_path):
    _, q = make_int8_mlp()
    path = tmp_path / "whole.pt"
    torch.save(q, path)
    with pytest.raises(P.UnsafeCheckpointError, match="container.Sequential.*safe_globals") as raised:
        P.load_state_file(path)
    assert "It runs code" not in str(raised.value)  # classes, not commands: the safe_globals advice applies


class _RunsShellCommand:
    """Pickles as a call to ``os.system(command)``: what a malicious checkpoint hides in its state_dict."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _malicious_checkpoint(path, marker):
    torch.save({"0.weight": torch.zeros(2, 2), "payload": _RunsShellCommand(f"touch {shlex.quote(str(marker))}")}, path)


def test_blocked_global_is_unsafe_and_the_payload_never_runs(tmp_path):
    marker, path = tmp_path / "payload-ran", tmp_path / "quantized_state.pt"
    _malicious_checkpoint(path, marker)
    blocked = f"{os.system.__module__}.system"  # posix.system on Linux and macOS
    with pytest.raises(P.UnsafeCheckpointError) as raised:
        P.load_state_file(path)
    message = str(raised.value)
    assert f"it asks for {blocked}. Nothing in the file was executed" in message  # names the global
    assert f"It runs code ({blocked}): delete it, and never load it with weights_only=False" in message
    assert "safe_globals" not in message  # no allow-listing advice for a command
    assert "truncated" not in message
    assert not isinstance(raised.value, P.CorruptCheckpointError)
    assert not marker.exists()


def test_blocked_global_behind_a_valid_manifest_is_refused(saved_mlp, tmp_path):
    _, directory = saved_mlp
    marker, weights = tmp_path / "payload-ran", directory / P.WEIGHTS_FILE
    _malicious_checkpoint(weights, marker)
    manifest = json.loads((directory / P.MANIFEST_FILE).read_text())  # an attacker rewrites the checksum too
    manifest["files"][P.WEIGHTS_FILE] = {"sha256": sha256_file(weights), "bytes": weights.stat().st_size}
    (directory / P.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(P.UnsafeCheckpointError, match="refused"):
        P.load_quantized(directory, build_mlp)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1, 2, 4])
def test_a_bare_pickle_that_runs_code_is_unsafe_not_corrupt(tmp_path, protocol):
    """``pickle.dump`` writes no torch.save archive, and protocols 0-1 start without PROTO: still refused, unrun."""
    import pickle

    marker, path = tmp_path / "payload-ran", tmp_path / "model.bin"
    with open(path, "wb") as f:
        pickle.dump({"payload": _RunsShellCommand(f"touch {shlex.quote(str(marker))}")}, f, protocol=protocol)
    with pytest.raises(P.UnsafeCheckpointError, match=rf"asks for {os.system.__module__}\.system.*It runs code"):
        P.load_state_file(path)
    assert not marker.exists()


def test_garbage_is_corrupt_not_unsafe(tmp_path):
    """Bytes that are no readable pickle, even behind a pickle's first bytes or inside a torch.save archive."""
    torch.save({"w": torch.ones(3)}, tmp_path / "good.pt")
    blob = bytearray((tmp_path / "good.pt").read_bytes())
    start = blob.index(b"data.pkl") + len(b"data.pkl")
    blob[start:start + 40] = b"\xff" * 40  # the pickle's bytes, in the archive's first record
    cases = {"pickle-like.pt": b"\x80\x02" + b"\xff" * 50, "archive.pt": bytes(blob)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises((P.CorruptCheckpointError, P.UnsafeCheckpointError)) as raised:
            P.load_state_file(tmp_path / name)
        assert isinstance(raised.value, P.CorruptCheckpointError), f"{name}: {raised.value}"


def test_pickled_globals_reads_without_running(tmp_path):
    _, q = make_int8_mlp()
    torch.save(q, tmp_path / "whole.pt")
    asks = P.pickled_globals(tmp_path / "whole.pt")
    assert "torch.nn.modules.container.Sequential" in asks
    assert "torch._utils._rebuild_tensor_v2" not in asks  # allowed by weights_only, so torch's scan drops it
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    assert P.pickled_globals(tmp_path / "garbage.pt") is None
    torch.save(q.state_dict(), tmp_path / "state.pt")
    assert P.load_state_file(tmp_path / "state.pt").keys() == q.state_dict().keys()


def test_checkpoint_kind_and_spec():
    float_model, q = make_int8_mlp()
    assert P.checkpoint_kind(float_model.state_dict()) == "float"
    assert P.checkpoint_kind(q.state_dict()) == "quantized"
    assert P.quantized_layers(q.state_dict()) == ["0", "2"]
    with pytest.raises(ValueError, match="modules must be"):
        P.QuantSpec(modules=("torch.nn.Conv2d",))
    with pytest.raises(ValueError, match="dtype must be"):
        P.QuantSpec(dtype="int4")
    with pytest.raises(ValueError, match="ScriptObject"):
        P.QuantSpec(modules=("torch.nn.Linear", "torch.nn.LSTM"))
    spec = P.QuantSpec(dtype="float16")
    assert P.QuantSpec.from_dict(json.loads(json.dumps(spec.as_dict()))) == spec


def test_float16_round_trip(tmp_path):
    spec = P.QuantSpec(dtype="float16")
    q = spec.apply(make_int8_mlp(seed=2)[0])  # other weights than build_mlp's
    P.save_quantized(q, tmp_path / "fp16", spec)
    loaded = P.load_quantized(tmp_path / "fp16", build_mlp)
    x = torch.randn(5, 16)
    assert torch.equal(q(x), loaded(x))


def test_messages_name_files_relative_to_the_course_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8_COURSE_CACHE", str(tmp_path / "cache"))
    _, q = make_int8_mlp()
    directory = tmp_path / "cache" / "05_save_load" / "helper"
    P.save_quantized(q, directory)
    weights = directory / P.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(P.CorruptCheckpointError) as raised:
        P.load_quantized(directory, build_mlp)
    message = str(raised.value)
    assert message.startswith("<course cache>/05_save_load/helper/quantized_state.pt is ")  # still names the file
    assert str(tmp_path) not in message
    with pytest.raises(P.CheckpointMissingError, match="no checkpoint directory at <course cache>/nowhere;"):
        P.load_quantized(tmp_path / "cache" / "nowhere", build_mlp)


def test_shown():
    from helpers.paths import PROJECT_ROOT, cache_dir

    assert P.shown(cache_dir() / "a" / "b.pt") == "<course cache>/a/b.pt"
    assert P.shown(PROJECT_ROOT / "notebooks" / "x.pt") == "notebooks/x.pt"
    outside = "/somewhere/else/model.pt"
    assert P.shown(outside) == outside  # a file of the learner's own: named as they gave it


def test_key_mismatch_summary_counts_kinds_of_keys():
    float_model, q = make_int8_mlp()
    outcome = build_mlp().load_state_dict(q.state_dict(), strict=False)
    assert P.key_mismatch_summary(outcome.missing_keys, outcome.unexpected_keys) == (
        "4 MISSING (2 x bias, 2 x weight); 8 UNEXPECTED (2 x _packed_params._packed_params, "
        "2 x _packed_params.dtype, 2 x scale, 2 x zero_point)")
    assert P.key_mismatch_summary([], []) == "0 MISSING; 0 UNEXPECTED"
    bert_float, bert_int8 = build_tiny_bert().state_dict(), P.QuantSpec().apply(build_tiny_bert()).state_dict()
    summary = P.key_mismatch_summary(set(bert_float) - set(bert_int8), set(bert_int8) - set(bert_float))
    assert summary.startswith("28 MISSING (14 x bias, 14 x weight); 56 UNEXPECTED (14 x ")


def test_a_rewritten_manifest_hides_tampering(saved_mlp):
    """The checksum detects damage, not tampering: whoever edits the weights can edit the manifest beside them."""
    q, directory = saved_mlp
    weights, manifest_path = directory / P.WEIGHTS_FILE, directory / P.MANIFEST_FILE
    state = torch.load(weights, weights_only=True)
    w, b = state["2._packed_params._packed_params"]
    state["2._packed_params._packed_params"] = (w, b + 5.0)  # every output of the last layer shifted
    torch.save(state, weights)
    with pytest.raises((P.ChecksumMismatchError, P.CorruptCheckpointError)):  # size or sha256 no longer match
        P.load_quantized(directory, build_mlp)
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][P.WEIGHTS_FILE] = {"sha256": sha256_file(weights), "bytes": weights.stat().st_size}
    manifest_path.write_text(json.dumps(manifest))
    x = torch.randn(4, 16)
    assert not torch.equal(P.load_quantized(directory, build_mlp)(x), q(x))  # loads, and computes something else
