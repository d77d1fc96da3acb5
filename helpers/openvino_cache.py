"""The OpenVINO route's file cache: converted and quantized models under ``cache_dir()/openvino/<key>/``.

Each entry holds ``model.xml`` (the graph), ``model.bin`` (the weights) and ``meta.json`` (the settings, the sha256 of
the ``.bin``, build seconds). The key hashes the settings, so a different classifier or NNCF setting never overwrites
an entry. An entry is built in a private temporary folder and renamed into place under a file lock; an entry whose
``.bin`` does not match its recorded sha256 is rebuilt. ``helpers.openvino_route`` re-exports these names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Mapping

import torch

from .paths import cache_dir, sha256_file

MODEL_FILE, WEIGHTS_FILE, META_FILE = "model.xml", "model.bin", "meta.json"


class OpenVinoCacheError(ValueError):
    """A cache entry could not be built (the build wrote no model)."""


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short sha256 over a model's parameter and buffer names, shapes and values: equal weights, equal key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def entry_key(settings: Mapping[str, object]) -> str:
    """The cache key of an entry: a short sha256 of its settings (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:12]


def _entry_root(root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else cache_dir() / "openvino"


def _entry_is_complete(entry: Path, key: str) -> bool:
    try:
        meta = json.loads((entry / META_FILE).read_text())
        return (meta.get("key") == key and (entry / MODEL_FILE).is_file()
                and meta.get("bin_sha256") == sha256_file(entry / WEIGHTS_FILE))
    except (OSError, ValueError):
        return False


def cached_model(settings: Mapping[str, object], build: Callable[[Path], None],
                 root: str | os.PathLike | None = None) -> Path:
    """``<root>/<key>/model.xml`` for ``settings``, built by ``build(xml_path)`` unless a complete entry exists.

    ``build`` writes ``model.xml`` + ``model.bin`` into a private temporary folder; the folder gets a ``meta.json``
    (settings, sha256 of the ``.bin``, build seconds) and is renamed into place. A file lock serialises callers, so
    two processes never build the same entry twice nor read a half-written one."""
    from filelock import FileLock

    key = entry_key(settings)
    entry = _entry_root(root) / key
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        if _entry_is_complete(entry, key):
            return entry / MODEL_FILE
        tmp = entry.with_name(f".{key}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            start = time.perf_counter()
            build(tmp / MODEL_FILE)
            if not (tmp / MODEL_FILE).is_file() or not (tmp / WEIGHTS_FILE).is_file():
                raise OpenVinoCacheError(f"building the entry wrote no {MODEL_FILE}/{WEIGHTS_FILE} pair in {tmp}")
            meta = {"key": key, "settings": dict(settings), "bin_sha256": sha256_file(tmp / WEIGHTS_FILE),
                    "build_seconds": round(time.perf_counter() - start, 1)}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            shutil.rmtree(entry, ignore_errors=True)  # an incomplete or corrupt entry
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry / MODEL_FILE


def entry_meta(xml_path: str | os.PathLike) -> dict:
    """The ``meta.json`` beside a cached ``model.xml``: its settings, the sha256 of its ``.bin``, build seconds."""
    return json.loads((Path(xml_path).parent / META_FILE).read_text())


def model_bytes(xml_path: str | os.PathLike) -> int:
    """Bytes on disk of an OpenVINO model: its ``.xml`` (the graph) plus its ``.bin`` (the weights)."""
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml" or not xml_path.is_file():
        raise FileNotFoundError(f"no OpenVINO model at {xml_path}: pass the .xml path that convert_classifier or "
                                "quantize_classifier returned")
    weights = xml_path.with_suffix(".bin")
    if not weights.is_file():
        raise FileNotFoundError(f"{xml_path} has no weights file {weights.name} beside it: the model is incomplete; "
                                "convert or quantize it again")
    return xml_path.stat().st_size + weights.stat().st_size
