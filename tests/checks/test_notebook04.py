"""The checkers of notebook 04's exercises, on the shared tiny BERT: a right answer passes, each kind of wrong
answer fails with the hint that names its cause."""

import warnings

import numpy as np
import pytest

from helpers import checks, measure, models
from helpers import onnx_route as R
from helpers.data import Split

MAX_LEN = 16
NAMES = list(models.INPUT_NAMES)
TRAIN = ["a gripping, beautifully shot film", "dull and far too long", "fine", "the worst movie of the year",
         "an unexpected delight from start to finish", "meh", "two hours I will never get back", "a small gem"]
VALIDATION = ["quietly devastating", "loud, dumb and proud of it", "not bad at all", "a mess", "lovely", "boring"]
SPLITS = {"train": Split(TRAIN, [1, 0, 1, 0, 1, 0, 0, 1], "train"),
          "validation": Split(VALIDATION, [1, 0, 1, 0, 1, 0], "validation")}


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    """Checkers print their verdict (strict mode, which raises, is tested on its own)."""
    monkeypatch.delenv(checks.STRICT_ENV_VAR, raising=False)


class Reader:
    """A calibration reader like the exercise's: tokenizes each batch when asked, rewinds."""

    def __init__(self, tokenizer, texts, batch_size=3, dtype=np.int64, max_len=MAX_LEN, names=NAMES):
        self.tokenizer, self.texts, self.batch_size = tokenizer, list(texts), batch_size
        self.dtype, self.max_len, self.names, self.position = dtype, max_len, names, 0

    def get_next(self):
        if self.position >= len(self.texts):
            return None
        chunk = self.texts[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        enc = self.tokenizer(chunk, padding="max_length", truncation=True, max_length=self.max_len, return_tensors="np")
        return {n: enc[n].astype(self.dtype) for n in self.names}

    def rewind(self):
        self.position = 0


@pytest.fixture(scope="module")
def tiny(make_tiny_bert, course_tokenizer, tmp_path_factory):
    """The tiny BERT exported, pre-processed (unfused and fused), fp32 validation logits, and a static QDQ model."""
    model = make_tiny_bert(logit_scale=20.0, num_attention_heads=4)
    folder = tmp_path_factory.mktemp("checks04")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = R.export_classifier(model, course_tokenizer, folder / "model.onnx", MAX_LEN)
    unfused = R.preprocess(exported, folder / "model.pre.onnx")
    optimized, _ = R.optimize_bert(exported, folder / "model.opt.onnx", num_heads=4, hidden_size=32)
    fused = R.preprocess(optimized, folder / "model.opt.pre.onnx")
    fp32 = R.run_logits(R.make_session(exported, threads=1), course_tokenizer, VALIDATION, MAX_LEN)
    static = R.quantize_static_variant(unfused, folder / "static.onnx", Reader(course_tokenizer, TRAIN),
                                       op_types=("MatMul", "Gather"))
    return {"folder": folder, "unfused": unfused, "fused": fused, "fp32": fp32, "static": static}


def static_check(tiny, tokenizer, reader, path, **kwargs):
    checks.check_static_int8(reader, name="Exercise 1", model_path=path, input_names=NAMES, max_len=MAX_LEN,
                             tokenizer=tokenizer, splits=SPLITS, fp32_val_logits=tiny["fp32"], **kwargs)
    return checks.outcomes["Exercise 1"]


def test_a_right_reader_and_model_pass(tiny, course_tokenizer, capsys):
    reader = Reader(course_tokenizer, TRAIN)
    # a random tiny model: agreement is luck
    assert static_check(tiny, course_tokenizer, reader, tiny["static"], min_agreement=0.0)
    out = capsys.readouterr().out
    assert f"{len(TRAIN)} training sentences in 3 batches" in out and "agrees with fp32 on" in out


@pytest.mark.parametrize("make_reader, hint", [
    (lambda tok: Reader(tok, TRAIN, dtype=np.int32), "numpy int64 arrays"),
    (lambda tok: Reader(tok, TRAIN, max_len=MAX_LEN - 4), "expected [batch, 16]"),
    (lambda tok: Reader(tok, TRAIN, names=["input_ids", "attention_mask"]), "exactly the keys"),
    (lambda tok: Reader(tok, TRAIN[:4] + VALIDATION[:2]), "2 calibration sentences are not from splits['train']"),
    (lambda tok: Reader(tok, []), "returned None at once"),
    (lambda tok: TRAIN, "needs a get_next() method"),
])
def test_a_wrong_reader_gets_a_specific_hint(tiny, course_tokenizer, capsys, make_reader, hint):
    assert not static_check(tiny, course_tokenizer, make_reader(course_tokenizer), tiny["static"])
    assert hint in capsys.readouterr().out


def test_a_reader_that_never_ends_is_caught(tiny, course_tokenizer, capsys):
    class Endless(Reader):
        def get_next(self):
            self.position = 0
            return super().get_next()

    assert not static_check(tiny, course_tokenizer, Endless(course_tokenizer, TRAIN), tiny["static"])
    assert "return None when the sentences run out" in capsys.readouterr().out


def test_a_model_without_qdq_or_too_unfaithful_fails(tiny, course_tokenizer, capsys):
    reader = Reader(course_tokenizer, TRAIN)
    dynamic = R.quantize_dynamic_variant(tiny["unfused"], tiny["folder"] / "dynamic.onnx")
    assert not static_check(tiny, course_tokenizer, reader, dynamic)
    assert "quant_format=QuantFormat.QDQ" in capsys.readouterr().out
    assert not static_check(tiny, course_tokenizer, reader, tiny["folder"] / "missing.onnx")
    assert "no file at missing.onnx" in capsys.readouterr().out
    assert not static_check(tiny, course_tokenizer, reader, tiny["static"], min_agreement=1.01)
    assert "agrees with fp32 on only" in capsys.readouterr().out


def test_unanswered_static_exercise_says_so(tiny, course_tokenizer, capsys):
    assert not static_check(tiny, course_tokenizer, ..., ...)
    assert "no answer yet" in capsys.readouterr().out


def test_strict_mode_raises_on_a_wrong_reader(tiny, course_tokenizer, monkeypatch):
    monkeypatch.setenv(checks.STRICT_ENV_VAR, "1")
    with pytest.raises(checks.ExerciseNotSolved, match="numpy int64"):
        static_check(tiny, course_tokenizer, Reader(course_tokenizer, TRAIN, dtype=np.int32), tiny["static"])


@pytest.fixture(scope="module")
def no_embed(tiny):
    """The exercise's model: dynamic int8 with the embeddings left fp32, and its real size in MB."""
    path = R.quantize_dynamic_variant(tiny["fused"], tiny["folder"] / "no-embed.onnx", per_channel=True,
                                      op_types=["MatMul", "Attention"])
    return path, measure.mb(measure.size_on_disk(path))


def size_check(predicted, path):
    checks.check_onnx_size_prediction(predicted, name="Exercise 2", model_path=path)
    return checks.outcomes["Exercise 2"]


def test_a_close_size_prediction_passes(no_embed, capsys):
    path, measured = no_embed
    assert size_check(measured * 1.04, path)
    assert "% off" in capsys.readouterr().out
    assert not size_check(measured * 1.2, path)
    assert "add 3 bytes for every embedding value" in capsys.readouterr().out
    assert not size_check("big", path)
    assert "should be a number" in capsys.readouterr().out


def test_the_size_exercise_wants_fp32_embeddings_and_int8_attention(tiny, no_embed, capsys):
    all_int8 = R.quantize_dynamic_variant(tiny["fused"], tiny["folder"] / "all-int8.onnx", per_channel=True)
    assert not size_check(measure.mb(measure.size_on_disk(all_int8)), all_int8)
    assert "embeddings should stay fp32" in capsys.readouterr().out
    matmul_only = R.quantize_dynamic_variant(tiny["fused"], tiny["folder"] / "matmul-only.onnx", op_types=["MatMul"])
    assert not size_check(measure.mb(measure.size_on_disk(matmul_only)), matmul_only)
    assert "attention should be int8" in capsys.readouterr().out
    assert not size_check(1.0, tiny["folder"] / "nothing.onnx")
    assert "no file at nothing.onnx" in capsys.readouterr().out
    assert not size_check(..., no_embed[0])
    assert "no answer yet" in capsys.readouterr().out


def test_the_exercise_prediction_rule_holds_on_the_tiny_model(tiny, no_embed):
    """The rule the hint teaches (int8 size + 3 bytes per fp32 embedding value) predicts the size within 5%."""
    all_int8 = R.quantize_dynamic_variant(tiny["fused"], tiny["folder"] / "all-int8-pc.onnx", per_channel=True)
    values = sum(r["bytes"] // 4 for r in R.initializers(tiny["fused"])
                 if r["used by"] == "EmbedLayerNormalization" and r["dtype"] == "float32" and len(r["shape"]) == 2)
    predicted = measure.mb(measure.size_on_disk(all_int8) + 3 * values)
    assert abs(predicted - no_embed[1]) / no_embed[1] < 0.05
