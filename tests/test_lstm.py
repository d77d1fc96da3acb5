import dataclasses
import random

import pytest
import torch
from torch import nn

from helpers import engine, lstm, measure


def test_tokenize_lowercases_and_splits_punctuation():
    assert lstm.tokenize("It's a GREAT film, isn't it?!") == ["it's", "a", "great", "film", ",", "isn't", "it", "?",
                                                              "!"]
    assert lstm.tokenize("   ") == []
    with pytest.raises(TypeError, match="expects a string"):
        lstm.tokenize(None)


def test_vocab_build_counts_and_orders_words():
    vocab = lstm.Vocab.build(["b a a", "c a b", "d"], min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b"]  # a (3) before b (2); c, d seen once are dropped
    assert len(vocab) == 4 and "a" in vocab and "c" not in vocab
    assert lstm.Vocab.build(["b a a", "c a b", "d"], min_freq=1, max_size=3).itos == ["<pad>", "<unk>", "a", "b", "c"]


def test_vocab_maps_unknown_words_to_unk():
    vocab = lstm.Vocab.build(["good movie", "good film", "bad movie"], min_freq=2)
    assert vocab.encode("Good MOVIE, awful") == [vocab.stoi["good"], vocab.stoi["movie"], lstm.UNK_ID, lstm.UNK_ID]
    assert vocab.unknown_rate(["good awful"]) == pytest.approx(0.5)
    assert vocab.decode(vocab.encode("good movie")) == ["good", "movie"]


def test_encode_batch_pads_right_and_truncates():
    vocab = lstm.Vocab.build(["one two three four", "one two three four"])
    ids = vocab.encode_batch(["one two three four", "two", ""], max_len=3)
    assert ids.dtype == torch.long and ids.shape == (3, 3)
    assert ids[0].tolist() == [vocab.stoi[w] for w in ("one", "two", "three")]  # truncated
    assert ids[1].tolist() == [vocab.stoi["two"], lstm.PAD_ID, lstm.PAD_ID]  # padded on the right
    assert ids[2].tolist() == [lstm.UNK_ID, lstm.PAD_ID, lstm.PAD_ID]  # an empty text still has length 1
    assert vocab.encode_batch(["one", "one two"]).shape == (2, 2)  # no max_len: pad to the longest row
    fixed = vocab.encode_batch(["one", "one two"], max_len=3, pad_to=3)  # the protocol's fixed shape
    assert fixed.tolist() == [[vocab.stoi["one"], 0, 0], [vocab.stoi["one"], vocab.stoi["two"], 0]]
    with pytest.raises(ValueError, match=r"pad_to=2 is shorter than the longest row \(4 ids\); pass max_len=2"):
        vocab.encode_batch(["one two three four"], pad_to=2)


def test_vocab_bad_input_errors():
    with pytest.raises(ValueError, match="no texts"):
        lstm.Vocab.build([])
    with pytest.raises(TypeError, match="single string"):
        lstm.Vocab.build("a whole review")
    with pytest.raises(ValueError, match="min_freq"):
        lstm.Vocab.build(["a"], min_freq=0)
    with pytest.raises(ValueError, match="must start with"):
        lstm.Vocab(["a", "b"])
    vocab = lstm.Vocab.build(["a a"])
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode_batch(["a"], max_len=0)
    with pytest.raises(TypeError, match="single string"):
        vocab.encode_batch("a")
    with pytest.raises(ValueError, match="no texts"):
        vocab.encode_batch([])


def test_classifier_shapes_and_padding_invariance():
    torch.manual_seed(0)
    model = lstm.LSTMClassifier(vocab_size=20, embed_dim=8, hidden=16, layers=2, num_classes=3).eval()
    assert isinstance(model.embedding, nn.Embedding) and model.lstm.num_layers == 2
    short, long = torch.tensor([[5, 6, 7]]), torch.tensor([[2, 3, 4, 5, 6, 7]])
    batch = torch.tensor([[5, 6, 7, 0, 0, 0], [2, 3, 4, 5, 6, 7]])
    with torch.no_grad():
        logits = model(batch)
        assert logits.shape == (2, 3)
        # the padded row gives the same logits as the row on its own: padding never reaches the classifier
        torch.testing.assert_close(logits[0], model(short)[0])
        torch.testing.assert_close(logits[1], model(long)[0])


def test_classifier_bad_input_errors():
    model = lstm.LSTMClassifier(vocab_size=10, embed_dim=4, hidden=4)
    with pytest.raises(ValueError, match=r"\[batch, T\] long tensor"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="long tensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="built for this vocabulary"):
        model(torch.tensor([[1, 10]]))
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        lstm.LSTMClassifier(vocab_size=10, hidden=0)
    with pytest.raises(ValueError, match="num_classes"):
        lstm.LSTMClassifier(vocab_size=10, num_classes=1)


def _synthetic(n, seed):
    """Label 1 if the text contains 'good', else 0; the cue word sits among filler words."""
    rng = random.Random(seed)
    filler = [f"w{i}" for i in range(30)]
    texts, labels = [], []
    for _ in range(n):
        words = rng.choices(filler, k=rng.randint(3, 8))
        label = rng.random() < 0.5
        words.insert(rng.randrange(len(words) + 1), "good" if label else "bad")
        texts.append(" ".join(words))
        labels.append(int(label))
    return texts, labels


def test_short_training_run_beats_chance_on_an_easy_task():
    train_texts, train_labels = _synthetic(400, 0)
    val_texts, val_labels = _synthetic(200, 1)
    vocab = lstm.Vocab.build(train_texts)
    cfg = lstm.LSTMConfig(embed_dim=16, hidden=32, dropout=0.0, max_epochs=8, patience=8, lr=1e-2, batch_size=32)
    model = lstm.build_classifier(vocab, cfg)
    val_ids = vocab.encode_batch(val_texts)
    history = lstm.train(model, vocab.encode_batch(train_texts), train_labels, val_ids, val_labels, cfg,
                         progress=False)
    assert 1 <= len(history) <= 8 and {"epoch", "train_loss", "val_accuracy", "seconds"} <= set(history[0])
    preds = lstm.predict(model, val_ids, batch_size=64).argmax(dim=1)
    acc = (preds == torch.as_tensor(val_labels)).float().mean().item()
    assert acc >= 0.9, f"the LSTM should learn 'good' vs 'bad' easily, got accuracy {acc:.2f}"
    # the weights kept are those of the best validation epoch
    assert acc == pytest.approx(max(h["val_accuracy"] for h in history))


def test_training_respects_early_stopping_and_validates_input():
    texts, labels = _synthetic(64, 2)
    vocab = lstm.Vocab.build(texts)
    ids = vocab.encode_batch(texts)
    cfg = lstm.LSTMConfig(embed_dim=4, hidden=4, max_epochs=50, patience=1, lr=0.0)  # lr 0: never improves
    history = lstm.train(lstm.build_classifier(vocab, cfg), ids, labels, ids, labels, cfg, progress=False)
    assert len(history) == 2  # the first epoch sets the best, the second fails to beat it, patience 1 stops
    with pytest.raises(ValueError, match="differ in length"):
        lstm.train(lstm.build_classifier(vocab, cfg), ids, labels[:-1], ids, labels, cfg, progress=False)


def test_training_restores_the_thread_count():
    texts, labels = _synthetic(32, 3)
    vocab = lstm.Vocab.build(texts)
    ids = vocab.encode_batch(texts)
    cfg = lstm.LSTMConfig(embed_dim=4, hidden=4, max_epochs=1, threads=1)
    model = lstm.build_classifier(vocab, cfg)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    with measure.num_threads(2):  # not the config's 1: a train() that forgot to restore would leave 1 behind
        lstm.train(model, ids, labels, ids, labels, cfg, progress=False)
        assert torch.get_num_threads() == 2
    assert seen and set(seen) == {1}  # it trained on the config's thread count


def test_dynamic_quantization_keeps_predictions_and_leaves_embedding_fp32():
    from helpers import deprecations

    engine.select_engine()
    deprecations.silence_known()
    texts, labels = _synthetic(64, 4)
    vocab = lstm.Vocab.build(texts)
    cfg = dataclasses.replace(lstm.SMOKE, embed_dim=16, hidden=64)
    model = lstm.build_classifier(vocab, cfg).eval()
    q = torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    assert type(q.embedding) is nn.Embedding  # no dynamic int8 kernel for a lookup table
    assert type(q.lstm) is torch.ao.nn.quantized.dynamic.LSTM and type(q.fc) is torch.ao.nn.quantized.dynamic.Linear
    ids = vocab.encode_batch(texts)
    a, b = lstm.predict(model, ids), lstm.predict(q, ids)
    assert a.shape == b.shape == (64, 2)
    assert (a - b).abs().max().item() < 0.05


def test_predict_scores_in_protocol_batches_in_order():
    from helpers import evaluation

    model = lstm.LSTMClassifier(vocab_size=10, embed_dim=4, hidden=4).eval()
    sizes = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    ids = torch.randint(1, 10, (evaluation.EVAL_BATCH_SIZE * 2 + 5, 6))
    logits = lstm.predict(model, ids)
    assert sizes == [evaluation.EVAL_BATCH_SIZE, evaluation.EVAL_BATCH_SIZE, 5]
    with torch.no_grad():
        torch.testing.assert_close(logits, model(ids))  # same rows, same order
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        lstm.predict(model, ids, batch_size=0)


def test_training_length_is_counted_in_epochs_not_seconds():
    assert not any("budget" in f.name or "second" in f.name for f in dataclasses.fields(lstm.LSTMConfig))
    texts, labels = _synthetic(64, 5)
    vocab = lstm.Vocab.build(texts)
    ids = vocab.encode_batch(texts)
    cfg = lstm.LSTMConfig(embed_dim=4, hidden=4, max_epochs=3, patience=10)
    runs = [lstm.train(lstm.build_classifier(vocab, cfg), ids, labels, ids, labels, cfg, progress=False)
            for _ in range(2)]
    assert [len(h) for h in runs] == [3, 3]  # exactly max_epochs when validation keeps improving or not
    assert [h["train_loss"] for h in runs[0]] == [h["train_loss"] for h in runs[1]]  # same seed, same run
