"""Saving and loading a dynamically quantized model safely: a state_dict plus a manifest, and loud errors.

Why: ``quantize_dynamic`` replaces each ``nn.Linear`` with a module whose state_dict holds ``scale``, ``zero_point``
and ``_packed_params._packed_params`` instead of ``weight`` and ``bias``; a float model (``from_pretrained``,
``load_state_dict(strict=False)``) keeps fresh layers where those keys are missing. The fix is *rebuild, then load*
(``quantize_dynamic`` the float model, then ``load_state_dict(torch.load(f, weights_only=True))``); this helper adds
what a library format would give, for when there is none:

    save_quantized(int8_model, directory, QuantSpec())     # weights + manifest.json, written atomically
    model = load_quantized(directory, build_float)          # float skeleton -> same quantize_dynamic -> strict load

``directory`` holds two files:

- ``quantized_state.pt``: ``torch.save(model.state_dict())`` of the quantized model;
- ``manifest.json``: the quantization spec, torch version, quantized engine, and each file's size and sha256.
  It is written last, so a directory with a manifest is complete.

Loading rebuilds the float model with your builder, applies the manifest's ``quantize_dynamic`` spec, checks every
file against the manifest, reads the weights with ``torch.load(weights_only=True)`` (no code runs) and loads them
strictly. Every failure raises a ``PersistenceError`` subclass that names the cause and the fix (and the file: inside
the course cache or checkout relative to it, see ``shown``); nothing is ever silently re-initialised.

The manifest's sha256 detects a damaged file, not tampering (whoever can edit the weights can edit the manifest).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pickle
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch

from .paths import PROJECT_ROOT, atomic_write, cache_dir, sha256_file

FORMAT = "int8-course/quantized-state-dict"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "quantized_state.pt"

#: Layer types this helper saves, by the name the manifest stores. Only ``nn.Linear``: a dynamically quantized
#: LSTM/GRU keeps its weights in TorchScript objects (``torch.ScriptObject``) inside the state_dict, which
#: ``torch.load(weights_only=True)`` rightly refuses; those models need another route (ONNX, or re-quantizing).
MODULE_TYPES: dict[str, type] = {"torch.nn.Linear": torch.nn.Linear}
RECURRENT = ("torch.nn.LSTM", "torch.nn.GRU", "torch.nn.LSTMCell", "torch.nn.GRUCell", "torch.nn.RNNCell")
DTYPES: dict[str, torch.dtype] = {"qint8": torch.qint8, "float16": torch.float16}

#: The key suffix that marks a dynamically quantized layer in a state_dict (``<layer>._packed_params._packed_params``).
PACKED_SUFFIX = "._packed_params._packed_params"
#: torch 2.13 warns about its own deprecated TypedStorage API while it rebuilds quantized tensors in ``torch.load``;
#: the call is inside torch (``torch/_utils.py``), not in our code, so we filter exactly that message while loading.
TYPED_STORAGE_WARNING = r"TypedStorage is deprecated"

def shown(path: str | os.PathLike) -> str:
    """``path`` as error messages name it: ``<course cache>/...`` inside the course cache, relative inside the course
    checkout, otherwise as given. A printed error then never shows the machine's directory layout."""
    path = Path(path)
    for root, prefix in ((cache_dir(), "<course cache>/"), (PROJECT_ROOT, "")):
        try:
            return prefix + path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


# --- errors ---------------------------------------------------------------------------------------------------

class PersistenceError(Exception):
    """Base class: a quantized checkpoint could not be saved or loaded safely."""


class CheckpointMissingError(PersistenceError, FileNotFoundError):
    """The directory, its manifest or one of its files is missing."""


class CorruptCheckpointError(PersistenceError, ValueError):
    """A file is truncated or not a readable checkpoint (or the manifest is not valid JSON)."""


class ChecksumMismatchError(PersistenceError, ValueError):
    """A file's sha256 differs from the one recorded in the manifest."""


class IncompatibleVersionError(PersistenceError, RuntimeError):
    """The manifest was written by an incompatible torch version or an unknown manifest format."""


class EngineChangeWarning(UserWarning):
    """Loaded under an engine of another kernel family than the saving one: the int8 arithmetic itself can change."""


KERNEL_FAMILY = {"x86": "fbgemm", "fbgemm": "fbgemm", "onednn": "onednn", "qnnpack": "qnnpack"}  # dynamic Linear's


class FloatCheckpointError(PersistenceError, ValueError):
    """A float checkpoint (``weight``/``bias``) was given where a quantized one was expected."""


class QuantizedCheckpointError(PersistenceError, ValueError):
    """A quantized checkpoint (``_packed_params``) was given where a float one was expected."""


class KeyMismatchError(PersistenceError, ValueError):
    """The checkpoint's keys or shapes do not match the model (a different architecture or config)."""


class NotQuantizedError(PersistenceError, ValueError):
    """``save_quantized`` was given a model with no dynamically quantized layer."""


class UnsafeCheckpointError(PersistenceError, ValueError):
    """The file holds pickled objects that ``torch.load(weights_only=True)`` refuses to run (a global outside its
    allow-list, such as ``os.system``), in a ``torch.save`` archive or a bare pickle. The payload is never run."""


# --- the quantization spec ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuantSpec:
    """What ``torch.ao.quantization.quantize_dynamic`` was called with, in a form JSON can hold."""

    modules: tuple[str, ...] = ("torch.nn.Linear",)
    dtype: str = "qint8"
    method: str = "torch.ao.quantization.quantize_dynamic"

    def __post_init__(self):
        object.__setattr__(self, "modules", tuple(self.modules))
        recurrent = [m for m in self.modules if m in RECURRENT]
        if recurrent:
            raise ValueError(f"{recurrent}: a dynamically quantized recurrent layer stores its weights as "
                             "torch.ScriptObject, which torch.load(weights_only=True) cannot load safely. Save the "
                             "float model and re-quantize after loading, or export to ONNX.")
        unknown = [m for m in self.modules if m not in MODULE_TYPES]
        if unknown or not self.modules:
            raise ValueError(f"modules must be a non-empty subset of {sorted(MODULE_TYPES)}, got {list(self.modules)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.method != "torch.ao.quantization.quantize_dynamic":
            raise ValueError(f"only torch.ao.quantization.quantize_dynamic is supported, got {self.method!r}")

    def as_dict(self) -> dict:
        return {**asdict(self), "modules": list(self.modules)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "QuantSpec":
        try:
            return cls(modules=tuple(d["modules"]), dtype=d["dtype"], method=d["method"])
        except (KeyError, TypeError) as exc:
            raise CorruptCheckpointError(f"the manifest's quantization entry {dict(d)!r} is incomplete ({exc}); "
                                         "re-save the model with save_quantized") from exc

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        """``quantize_dynamic(model, modules, dtype)``: returns a new quantized model (``model`` is left as it was)."""
        return torch.ao.quantization.quantize_dynamic(model, {MODULE_TYPES[m] for m in self.modules},
                                                      dtype=DTYPES[self.dtype])


# --- telling checkpoints apart --------------------------------------------------------------------------------

def quantized_layers(state: Mapping[str, object]) -> list[str]:
    """Names of the dynamically quantized layers in a state_dict (the prefixes of
    ``..._packed_params._packed_params``)."""
    return sorted(k[: -len(PACKED_SUFFIX)] for k in state if k.endswith(PACKED_SUFFIX))


def checkpoint_kind(state: Mapping[str, object]) -> str:
    """``"quantized"`` if the state_dict holds dynamically quantized layers, ``"torchao"`` if it holds torchao
    tensor subclasses, else ``"float"``."""
    if quantized_layers(state):
        return "quantized"
    if any(type(v).__module__.startswith("torchao") for v in state.values()):
        return "torchao"
    return "float"


def load_strict(model: torch.nn.Module, state: Mapping[str, object], source: str = "the checkpoint") -> torch.nn.Module:
    """Load ``state`` into ``model`` only if every key matches; otherwise raise an error that says why.

    - the model is quantized and ``state`` is float: ``FloatCheckpointError``;
    - the model is float and ``state`` is quantized: ``QuantizedCheckpointError`` (the silent-collapse case);
    - other missing or unexpected keys, or a shape mismatch: ``KeyMismatchError``.
    """
    expected, got = set(model.state_dict()), set(state)
    if expected != got:
        model_q, state_q = quantized_layers(model.state_dict()), quantized_layers(state)
        missing, unexpected = sorted(expected - got), sorted(got - expected)
        if model_q and not state_q:
            raise FloatCheckpointError(
                f"{source} is a float checkpoint (it has {model_q[0]}.weight, no _packed_params), but the model is "
                f"dynamically quantized ({len(model_q)} int8 layers). Load it into the float model, then quantize; "
                "or save the quantized model with save_quantized.")
        if state_q and not model_q:
            raise QuantizedCheckpointError(
                f"{source} is a dynamically quantized checkpoint ({len(state_q)} int8 layers such as {state_q[0]}, "
                f"stored as scale/zero_point/_packed_params), but the model is float: its {len(missing)} weight/bias "
                "keys would stay randomly initialised. Rebuild the quantized skeleton first (quantize_dynamic with "
                "the same settings), or use load_quantized.")
        raise KeyMismatchError(
            f"{source} does not match the model: {len(missing)} missing keys (e.g. {missing[:3]}) and "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). Was it saved from another architecture or "
            "with another quantization spec? Build the same model and quantize it the same way.")
    own = model.state_dict()
    for key, value in state.items():
        if _shapes(value) != _shapes(own[key]):
            raise KeyMismatchError(
                f"{source} could not be loaded: {key} has shape {_shapes(value)} in the checkpoint but "
                f"{_shapes(own[key])} in the model. Build the model with the config the checkpoint was saved from.")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, AttributeError) as exc:
        raise KeyMismatchError(f"{source} has the model's keys but could not be loaded into it: {exc}. "
                               "Check the model config (sizes) matches the one the checkpoint was saved from.") from exc
    return model


def _shapes(value):
    """The shapes inside a state_dict value. Packed int8 params are a tuple (weight, bias) whose shapes
    ``load_state_dict`` does not check, so we do: a wider checkpoint would otherwise load into a narrower model."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        return tuple(_shapes(v) for v in value)
    return None


def key_mismatch_summary(missing_keys, unexpected_keys) -> str:
    """transformers' load report (or ``load_state_dict(strict=False)``'s result) as one line of key counts by kind
    (the part after the layer's name), e.g. ``76 MISSING (38 x bias, 38 x weight); 152 UNEXPECTED (38 x scale,
    ...)``."""
    parts = []
    for label, keys in (("MISSING", list(missing_keys)), ("UNEXPECTED", list(unexpected_keys))):
        kinds = collections.Counter(k[k.index("_packed_params"):] if "._packed_params" in k else k.rsplit(".", 1)[-1]
                                    for k in keys)
        listed = ", ".join(f"{n} x {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
        parts.append(f"{len(keys)} {label}" + (f" ({listed})" if keys else ""))
    return "; ".join(parts)


# --- files ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def quiet_typed_storage():
    """Filter exactly torch's own ``TypedStorage is deprecated`` warning (raised inside ``torch.load`` when it
    rebuilds quantized tensors); every other warning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TYPED_STORAGE_WARNING, category=UserWarning)
        yield


def pickled_globals(path: str | os.PathLike) -> list[str] | None:
    """What a file's pickle asks the unpickler to import, read with ``pickletools`` without running anything: the
    ``module.name`` of each global in a ``torch.save`` archive's ``data.pkl`` or in a bare pickle. For an archive,
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` keeps those outside ``weights_only``'s allow-list.
    None when the bytes are not a readable pickle (a damaged file)."""
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        else:
            data = Path(path).read_bytes()
        found, strings = set(), []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.add(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.add(".".join(strings[-2:]))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # a best-effort read of untrusted bytes: anything that stops it means "not readable"
        return None
    try:
        return sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) & found) or sorted(found)
    except Exception:  # not an archive torch can scan (a bare pickle, a pickle protocol it does not read)
        return sorted(found)


#: Modules whose callables run commands or code: a file that asks for one is an attack, whoever sent it (our list,
#: not torch's: torch blocks some of them in its weights-only unpickler whatever you allow).
RUNS_CODE = ("os", "posix", "nt", "subprocess", "sys", "builtins", "shutil", "socket", "runpy", "importlib", "pty")


def load_state_file(path: str | os.PathLike) -> dict:
    """``torch.load(path, weights_only=True, map_location="cpu")`` with errors that say what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointMissingError(f"no checkpoint file at {shown(path)}; save the model first (save_quantized)")
    try:
        with quiet_typed_storage():
            state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        asks = pickled_globals(path)
        if not asks:  # unreadable, or a pickle that names nothing: the bytes are damaged
            raise CorruptCheckpointError(f"{shown(path)} is truncated or not a torch checkpoint (its pickle cannot "
                                         "be read). Save the model again.") from exc
        runs_code = [g for g in asks if g.split(".")[0] in RUNS_CODE]
        fix = (f"It runs code ({', '.join(runs_code)}): delete it, and never load it with weights_only=False."
               if runs_code else "Load it with weights_only=False only if you wrote it yourself; if these are "
               "classes of yours that you trust, allow just them with torch.serialization.safe_globals([...]). "
               "Otherwise ask for the weights as safetensors or as a state_dict (save_quantized writes one).")
        raise UnsafeCheckpointError(f"torch.load(weights_only=True) refused {shown(path)}: it asks for "
                                    f"{', '.join(asks)}. Nothing in the file was executed. {fix}") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptCheckpointError(f"{shown(path)} is truncated or not a torch checkpoint ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0]}). Save the model again.") from exc
    if not isinstance(state, dict):
        raise CorruptCheckpointError(f"{shown(path)} holds a {type(state).__name__}, not a state_dict. "
                                     "Save model.state_dict() (save_quantized does).")
    return state


def _version_tuple(version: str) -> tuple[int, int]:
    try:
        major, minor = version.split("+")[0].split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise IncompatibleVersionError(f"cannot read the torch version {version!r} in the manifest; "
                                       "re-save the model with save_quantized") from None


def check_torch_version(saved: str, current: str | None = None) -> None:
    """This helper loads only files of the torch release that wrote them (same major.minor), else raises
    ``IncompatibleVersionError``: a deliberate policy for a deprecated API, not a limit torch documents."""
    current = current or torch.__version__
    if _version_tuple(saved) != _version_tuple(current):
        raise IncompatibleVersionError(
            f"the checkpoint was written by torch {saved}, this is torch {current}: this loader reads only the same "
            f"release (major.minor), since torch.ao.quantization is deprecated. Install torch=={saved} to load it, or "
            "keep the float weights and re-quantize them on load, or use a format that records the quantization "
            "(TorchAoConfig + save_pretrained, or ONNX).")


# --- save and load --------------------------------------------------------------------------------------------

def save_quantized(model: torch.nn.Module, directory: str | os.PathLike, spec: QuantSpec | None = None,
                   extra: Mapping | None = None) -> dict:
    """Save a dynamically quantized ``model`` into ``directory`` (``quantized_state.pt`` + ``manifest.json``).

    ``spec`` is how it was quantized (the default is ``nn.Linear`` to ``qint8``); ``extra`` is free JSON (for example
    the classifier's config). Each file is written atomically, the manifest last. Returns the manifest.
    """
    spec = spec or QuantSpec()
    state = model.state_dict()
    layers = quantized_layers(state)
    if not layers:
        raise NotQuantizedError(f"the model has no dynamically quantized layer (a {checkpoint_kind(state)} "
                                "state_dict); quantize it first with quantize_dynamic (QuantSpec.apply).")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    with atomic_write(weights) as tmp:
        torch.save(state, tmp)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "quantization": spec.as_dict(),
        "torch": torch.__version__,
        "engine": torch.backends.quantized.engine,
        "quantized_layers": len(layers),
        "files": {WEIGHTS_FILE: {"sha256": sha256_file(weights), "bytes": weights.stat().st_size}},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "extra": dict(extra or {}),
    }
    with atomic_write(directory / MANIFEST_FILE) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict:
    """The manifest of a saved directory, checked for format and torch version."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise CheckpointMissingError(f"no checkpoint directory at {shown(directory)}; "
                                     "save the model with save_quantized")
    if not path.is_file():
        stray = sorted(p.name for p in directory.iterdir() if p.suffix in (".pt", ".bin", ".pth", ".safetensors"))
        hint = (f" It holds {stray}: a bare weights file without a manifest cannot be checked or rebuilt. "
                if stray else " ")
        raise CheckpointMissingError(f"{shown(path)} is missing.{hint}Save the model with save_quantized.")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError(f"{shown(path)} is not valid JSON ({exc}); save the model again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IncompatibleVersionError(f"{shown(path)} is not a {FORMAT} manifest: it was not written by "
                                       "save_quantized. Save the model with save_quantized (or load this file with "
                                       "the tool that wrote it).")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IncompatibleVersionError(f"{shown(path)} has manifest format version "
                                       f"{manifest.get('format_version')}, this helper reads version "
                                       f"{FORMAT_VERSION}; update the course helpers or re-save")
    for key in ("quantization", "torch", "engine", "files"):
        if key not in manifest:
            raise CorruptCheckpointError(f"{shown(path)} lacks the {key!r} entry; save the model again")
    check_torch_version(manifest["torch"])
    return manifest


def verify_files(directory: str | os.PathLike, manifest: Mapping) -> None:
    """Every file in the manifest exists, has the recorded size (else: truncated) and the recorded sha256."""
    directory = Path(directory)
    for name, info in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise CheckpointMissingError(f"{shown(path)} is listed in the manifest but missing; save the model again")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise CorruptCheckpointError(f"{shown(path)} is {size} bytes, the manifest says {info['bytes']}: "
                                         f"the file is {'truncated' if size < info['bytes'] else 'not the one saved'}"
                                         ". Copy it again or save the model again.")
        digest = sha256_file(path)
        if digest != info["sha256"]:
            raise ChecksumMismatchError(f"{shown(path)} has sha256 {digest[:12]}…, the manifest says "
                                        f"{info['sha256'][:12]}…: the file was modified or corrupted after saving. "
                                        "Do not use it; save again.")


def load_quantized(directory: str | os.PathLike, build_float: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Rebuild and load a model saved by ``save_quantized``; returns it in eval mode.

    ``build_float()`` must return the float model of the same architecture (its weights do not matter: every
    quantized and float tensor is replaced from the file, strictly). The manifest's spec is applied to it, the files
    are checked against the manifest, and the weights are read with ``torch.load(weights_only=True)``.

    The file holds the int8 weights unpacked (``LinearPackedParams`` saves ``linear_unpack``'s output) and loading
    packs them for the active engine; under another kernel family (``KERNEL_FAMILY``) it warns.
    """
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    saved, engine = manifest["engine"], torch.backends.quantized.engine
    if KERNEL_FAMILY.get(saved, saved) != KERNEL_FAMILY.get(engine, engine):
        warnings.warn(EngineChangeWarning(
            f"the checkpoint was saved under the {saved!r} quantized engine and loads under {engine!r}, whose kernels "
            f"quantize activations differently (qnnpack ignores reduce_range: 8 bits where the others use 7), so "
            f"predictions can change: check agreement with the saving engine's outputs, or load under {saved!r} "
            f"where this CPU supports it (torch.backends.quantized.supported_engines)."), stacklevel=2)
    spec = QuantSpec.from_dict(manifest["quantization"])
    state = load_state_file(Path(directory) / WEIGHTS_FILE)
    kind = checkpoint_kind(state)
    if kind != "quantized":
        raise FloatCheckpointError(f"{shown(Path(directory) / WEIGHTS_FILE)} holds a {kind} state_dict, not a "
                                   "dynamically quantized one; save the quantized model with save_quantized.")
    model = build_float()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"build_float() must return a torch.nn.Module, got {type(model).__name__}")
    if quantized_layers(model.state_dict()):
        raise QuantizedCheckpointError("build_float() returned an already quantized model; it must build the float "
                                       "architecture, which load_quantized then quantizes with the manifest's spec.")
    skeleton = spec.apply(model.eval())
    return load_strict(skeleton, state, source=shown(Path(directory) / WEIGHTS_FILE)).eval()
