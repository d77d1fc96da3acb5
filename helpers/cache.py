"""The course's file cache: trained models and converted files, built once and shared by every notebook.

``cached_dir(name, build)`` is the one way an entry is made, under ``cache_dir()`` (or ``root``):
- ``build(folder)`` writes the entry's files into a private temporary folder, which is renamed into place, so a crash
  never leaves a half-written entry;
- ``meta.json`` records the sha256 of every file, and an entry whose files do not match is rebuilt;
- a file lock serialises callers, so two notebooks starting at once build once and never read a half-written entry.

``fingerprint(model)`` and ``settings_key(settings)`` make the names: equal weights or settings, equal name.
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

META_FILE = "meta.json"


class CacheBuildError(ValueError):
    """Building a cache entry wrote nothing, or not the files it was asked for."""


def fingerprint(model: torch.nn.Module) -> str:
    """A short sha256 over a model's parameter and buffer names, shapes, dtypes and bytes (any dtype, bf16 too)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def settings_key(settings: Mapping[str, object]) -> str:
    """A short sha256 of a settings mapping (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:12]


def _upgraded(meta: dict) -> dict:
    """A ``meta.json`` of the course's first cache format (one checksum, ``train_seconds``) in today's form, so an
    entry trained before ``cached_dir`` existed is not trained again."""
    if "files" in meta:
        return meta
    files = {"weights.pt": meta["sha256"]} if "sha256" in meta else {"model.bin": meta["bin_sha256"]}
    return {**meta, "files": files, "build_seconds": meta.get("build_seconds", meta.get("train_seconds"))}


def read_meta(entry: Path, required: tuple[str, ...] = ()) -> dict | None:
    """An entry's ``meta.json`` if every file it lists is there with its recorded sha256, and every ``required``
    file exists; otherwise None."""
    try:
        meta = _upgraded(json.loads((Path(entry) / META_FILE).read_text()))
        files = meta["files"]
        if (files and all((Path(entry) / name).is_file() for name in required)
                and all(sha256_file(Path(entry) / name) == digest for name, digest in files.items())):
            return meta
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def cached_dir(name: str, build: Callable[[Path], Mapping | None], root: str | os.PathLike | None = None,
               required: tuple[str, ...] = (), progress: bool = False,
               accept: Callable[[Path], bool] | None = None) -> tuple[Path, dict, bool]:
    """``(entry, meta, from_cache)`` for the entry ``<root>/<name>/``, built by ``build(folder)`` unless complete.

    ``build`` writes the entry's files into ``folder`` and may return more to record in ``meta.json`` (a training
    history, the settings). ``required`` names files the build must write. ``accept(entry)``, called under the lock
    on a complete entry, may refuse it (a checkpoint that no longer loads, say): it is rebuilt. ``meta`` holds what
    ``build`` returned, ``files`` (name → sha256) and ``build_seconds``."""
    from filelock import FileLock

    entry = Path(root if root is not None else cache_dir()) / name
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        meta = read_meta(entry, required)
        if meta is not None and (accept is None or accept(entry)):
            return entry, meta, True
        if entry.exists() and progress:
            print(f"cache entry {name} is incomplete or corrupt: rebuilding it")
        tmp = entry.with_name(f".{name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            start = time.perf_counter()
            extra = dict(build(tmp) or {})
            files = sorted(p.name for p in tmp.iterdir() if p.is_file() and p.name != META_FILE)
            missing = [f for f in required if f not in files]
            if not files or missing:
                raise CacheBuildError(f"building cache entry {name} wrote {files or 'nothing'}; "
                                      f"missing {missing or 'every file'}")
            meta = {**extra, "files": {f: sha256_file(tmp / f) for f in files},
                    "build_seconds": round(time.perf_counter() - start, 1)}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            shutil.rmtree(entry, ignore_errors=True)  # an incomplete or corrupt entry
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry, meta, False
