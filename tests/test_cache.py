"""``helpers.cache``: one locked, atomic, checksummed cache entry, and the fingerprint that names it."""

import json

import pytest
import torch

from helpers import cache


def _writer(builds, files=(("model.bin", b"weights"),)):
    def build(folder):
        builds.append(folder)
        for name, data in files:
            (folder / name).write_bytes(data)
        return {"settings": {"kind": "test"}}
    return build


def test_a_complete_entry_is_reused_and_records_each_file(tmp_path):
    builds = []
    entry, meta, from_cache = cache.cached_dir("e", _writer(builds), root=tmp_path)
    assert (entry, from_cache, len(builds)) == (tmp_path / "e", False, 1)
    assert meta["settings"] == {"kind": "test"} and len(meta["files"]["model.bin"]) == 64
    again, meta2, from_cache = cache.cached_dir("e", _writer(builds), root=tmp_path)
    assert (again, from_cache, len(builds)) == (entry, True, 1) and meta2 == meta
    assert json.loads((entry / cache.META_FILE).read_text()) == meta
    assert not list(tmp_path.glob(".*.tmp"))  # built in a temporary folder, renamed into place


@pytest.mark.parametrize("damage", ["truncate", "delete meta", "delete file"])
def test_a_damaged_entry_is_rebuilt(tmp_path, damage):
    builds = []
    entry, _, _ = cache.cached_dir("e", _writer(builds), root=tmp_path)
    if damage == "truncate":
        (entry / "model.bin").write_bytes(b"weig")
    else:
        (entry / (cache.META_FILE if damage == "delete meta" else "model.bin")).unlink()
    assert cache.read_meta(entry) is None
    _, _, from_cache = cache.cached_dir("e", _writer(builds), root=tmp_path)
    assert from_cache is False and len(builds) == 2 and (entry / "model.bin").read_bytes() == b"weights"


def test_a_failed_or_incomplete_build_leaves_nothing_behind(tmp_path):
    def fails(folder):
        (folder / "model.xml").write_text("<xml/>")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        cache.cached_dir("broken", fails, root=tmp_path)
    with pytest.raises(cache.CacheBuildError, match=r"missing \['model.bin'\]"):
        cache.cached_dir("half", _writer([], files=(("model.xml", b"<xml/>"),)), root=tmp_path,
                         required=("model.xml", "model.bin"))
    with pytest.raises(cache.CacheBuildError, match="wrote nothing"):
        cache.cached_dir("empty", lambda folder: None, root=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int8])
def test_the_fingerprint_reads_every_dtype_and_changes_with_any_value(dtype):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).to(dtype) if dtype.is_floating_point else torch.nn.Linear(4, 3)
    if not dtype.is_floating_point:
        model.register_buffer("codes", torch.randint(-128, 127, (3, 4), dtype=dtype))
    before = cache.fingerprint(model)
    assert before == cache.fingerprint(model) and len(before) == 16
    with torch.no_grad():
        model.bias[0] += 1
    assert cache.fingerprint(model) != before


def test_the_fingerprint_tells_dtypes_and_shapes_apart():
    weights = torch.nn.Linear(4, 4, bias=False)
    as_half = torch.nn.Linear(4, 4, bias=False).to(torch.bfloat16)
    assert cache.fingerprint(weights) != cache.fingerprint(as_half)
    flat = torch.nn.Module()
    flat.register_buffer("weight", weights.weight.detach().reshape(2, 8).clone())
    assert cache.fingerprint(weights) != cache.fingerprint(flat)


def test_the_settings_key_ignores_key_order_only():
    assert cache.settings_key({"a": 1, "b": 2}) == cache.settings_key({"b": 2, "a": 1})
    assert cache.settings_key({"a": 1, "b": 2}) != cache.settings_key({"a": 1, "b": 3})


def test_an_entry_the_caller_refuses_is_rebuilt(tmp_path):
    builds = []
    cache.cached_dir("e", _writer(builds), root=tmp_path)
    _, _, from_cache = cache.cached_dir("e", _writer(builds), root=tmp_path, accept=lambda entry: False)
    assert from_cache is False and len(builds) == 2
    _, _, from_cache = cache.cached_dir("e", _writer(builds), root=tmp_path, accept=lambda entry: True)
    assert from_cache is True and len(builds) == 2
    (tmp_path / "e" / "model.bin").rename(tmp_path / "e" / "other.bin")  # a required file is gone
    assert cache.read_meta(tmp_path / "e", required=("model.bin",)) is None


@pytest.mark.parametrize("old_meta, name", [
    ({"key": "k", "sha256": None, "train_seconds": 12.5, "history": []}, "weights.pt"),  # the classifier's
    ({"key": "k", "bin_sha256": None, "build_seconds": 3.0, "settings": {}}, "model.bin"),  # OpenVINO's
])
def test_an_entry_of_the_first_cache_format_is_reused(tmp_path, old_meta, name):
    from helpers.paths import sha256_file

    entry = tmp_path / "old"
    entry.mkdir()
    (entry / name).write_bytes(b"trained weights")
    digest_key = "sha256" if "sha256" in old_meta else "bin_sha256"
    (entry / cache.META_FILE).write_text(json.dumps({**old_meta, digest_key: sha256_file(entry / name)}))
    _, meta, from_cache = cache.cached_dir("old", _writer([]), root=tmp_path, required=(name,))
    assert from_cache is True and meta["build_seconds"] in (12.5, 3.0) and list(meta["files"]) == [name]
    (entry / name).write_bytes(b"damaged")
    assert cache.read_meta(entry) is None
