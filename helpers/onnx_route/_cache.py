"""Where the ONNX route's files go and when a step may reuse them (private to ``helpers.onnx_route``).

- Every file is written into a private staging folder beside its destination and moved into place (``staged``), so
  two runs at once never read a half-written model.
- Every file has a JSON sidecar ``<file>.json`` holding the settings it was written with (``artifact_meta``); a step
  reuses a file only when the sidecar matches its settings exactly (``reusable``).
- A derived file records its source's settings (``source_meta``), or the source's content hash when the source has
  no sidecar, so it is rebuilt whenever its source changed.
- ``require_onnx`` is the one check each step runs on its input file before onnx or onnxruntime read it.
- ``private_input`` gives each quantizer call its own copy of its input: ONNX Runtime's quantizers write a scratch
  file beside their input under a fixed name, which two processes quantizing one cached model at once would share.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from .. import measure
from ..paths import atomic_write, sha256_file


class OnnxRouteError(ValueError):
    """Bad input to an ONNX route helper (an unknown option, a model without the expected inputs, ...)."""


def require_onnx(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` if it holds a readable ONNX model with every external-data file it names beside it.

    A missing file raises ``FileNotFoundError`` and a file that does not parse as ONNX ``ValueError``, each saying
    what is missing and how to make it, before onnxruntime's terser errors could."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}: export the model first (onnx_route.export_classifier, or "
                                "onnx_route.prepare for the optimized and pre-processed graphs) and pass the path "
                                "it returns")
    missing = [p.name for p in measure.onnx_files(path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{path.name} keeps its weights in {missing}, which is not beside it in "
                                f"{path.parent}: copy the external-data files with the .onnx file, or export again")
    return path


@contextlib.contextmanager
def staged(path: Path):
    """Yield a path with ``path``'s file name inside a private temporary folder beside it; on success move every
    file written there into ``path.parent`` (external data first, the ``.onnx`` last), then drop the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = path.parent / f".stage-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage / path.name
        files = sorted(stage.iterdir(), key=lambda p: p.name == path.name)
        if not any(p.name == path.name for p in files):
            raise OnnxRouteError(f"nothing was written to {path.name}")
        for p in files:
            os.replace(p, path.parent / p.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def private_input(path: Path):
    """Yield a private path to the ONNX model ``path`` (and its external-data files): hard links, or copies where
    the filesystem has none, in a temporary folder beside it, removed afterwards.

    ``quantize_dynamic`` and ``quantize_static`` run ONNX shape inference into ``<input stem>-inferred.onnx``
    *beside their input*, read it back and delete it. Two processes quantizing the same cached model at once (a
    notebook and ``make bench``, or ``make run`` beside ``make test``) would read each other's half-written or
    deleted file; with a private input each writes its own."""
    path = Path(path)
    folder = path.parent / f".input-{path.stem}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        for source in measure.onnx_files(path):
            target = folder / source.relative_to(path.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:  # no hard links here (another filesystem, or not supported)
                shutil.copy2(source, target)
        yield folder / path.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _meta_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".json")


def artifact_meta(path: str | os.PathLike) -> dict | None:
    """The settings a helper wrote ``path`` with (the JSON sidecar ``<path>.json``), or None."""
    try:
        return json.loads(_meta_path(Path(path)).read_text())
    except (OSError, ValueError):
        return None


def write_meta(path: Path, meta: dict) -> None:
    with atomic_write(_meta_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))


def source_meta(path: Path) -> dict:
    """What a derived file records as its source: the source's own settings (its sidecar) or, for a file written
    without a sidecar (by a notebook's own ``torch.onnx.export`` or ``quantize_*`` call), its name and the sha256 of
    its bytes, so a derived file is rebuilt whenever its source changed."""
    meta = artifact_meta(path)
    if meta is not None:
        return meta
    digest = hashlib.sha256()
    for part in measure.onnx_files(path):
        digest.update(part.name.encode())
        digest.update(sha256_file(part).encode())
    return {"file": Path(path).name, "sha256": digest.hexdigest()}


def reusable(path: Path, meta: dict) -> bool:
    """True if ``path`` exists, is readable ONNX, and was written with exactly these settings."""
    if not Path(path).is_file() or artifact_meta(path) != meta:
        return False
    try:
        require_onnx(path)
    except (FileNotFoundError, ValueError):
        return False
    return True
