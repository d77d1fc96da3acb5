"""The learner's page: each notebook shows the libraries' own calls in its code cells (before any helper wraps them),
keeps code cells short, and reads as a course, not as a spec (no acceptance tables, no issue talk, no machine paths).

The calls are found by parsing the code cells with ``ast``, so a name in a comment, a string or markdown does not
count: the learner must be able to copy the cell into their own project."""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CELL_LINES = 25


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _code(cell) -> str:
    """A code cell as Python: IPython magics and shell escapes become comments."""
    lines = "".join(cell["source"]).splitlines()
    return "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line for line in lines)


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return "?"


class CellFacts:
    """What one code cell does: the calls it makes (dotted, as written), their keywords, the attributes it reads,
    what it assigns to, the classes it defines (with their bases) and the string constants it holds."""

    def __init__(self, source: str):
        tree = ast.parse(source)
        self.calls: list[tuple[str, ast.Call]] = []
        self.attributes: set[str] = set()
        self.names: set[str] = set()
        self.assigned: set[str] = set()
        self.class_bases: set[str] = set()
        self.strings: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                self.calls.append((_dotted(node.func), node))
            elif isinstance(node, ast.Attribute):
                self.attributes.add(_dotted(node))
            elif isinstance(node, ast.Name):
                self.names.add(node.id)
            elif isinstance(node, ast.ClassDef):
                self.class_bases |= {_dotted(b) for b in node.bases}
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                self.strings.add(node.value)
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                self.assigned |= {_dotted(t) for t in targets}

    def call(self, suffix: str):
        """The calls whose dotted name is ``suffix`` or ends with ``.suffix``."""
        return [c for name, c in self.calls if name == suffix or name.endswith("." + suffix)]

    def mentions(self, name: str) -> bool:
        return name in self.names or any(a == name or a.endswith("." + name) for a in self.attributes)


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


# Each requirement: (what the learner must see, a predicate over one cell's facts).
def calls(suffix):
    return lambda f: bool(f.call(suffix))


def torch_load_weights_only(f):
    return any(_is_true(_keyword(c, "weights_only")) for c in f.call("torch.load") + f.call("load")
               if _keyword(c, "weights_only") is not None)


def bf16_cast(f):
    return any(any(_dotted(a).endswith("bfloat16") for a in c.args) or
               (_keyword(c, "dtype") is not None and _dotted(_keyword(c, "dtype")).endswith("bfloat16"))
               for c in f.call("to"))


def quantize_dynamic_with_spec(f):
    return any(_keyword(c, "qconfig_spec") is not None or (len(c.args) > 1 and isinstance(c.args[1], ast.Dict))
               for c in f.call("quantize_dynamic"))


def qat_step(step):
    return lambda f: any(isinstance(_keyword(c, "step"), ast.Constant) and _keyword(c, "step").value == step
                         for c in f.call("QATConfig"))


def compile_model_with(*properties):
    return lambda f: bool(f.call("compile_model")) and all(
        p in f.strings or f.mentions(p.lower()) for p in properties)


REQUIRED = {
    "02": {
        "torch.backends.quantized.supported_engines":
            lambda f: f.mentions("torch.backends.quantized.supported_engines"),
        "torch.backends.quantized.engine = ...": lambda f: "torch.backends.quantized.engine" in f.assigned,
    },
    "03": {
        "quantize_dynamic(..., qconfig_spec=...)": quantize_dynamic_with_spec,
        "per_channel_dynamic_qconfig": lambda f: f.mentions("per_channel_dynamic_qconfig"),
        "float_qparams_weight_only_qconfig": lambda f: f.mentions("float_qparams_weight_only_qconfig"),
    },
    "04": {
        "torch.onnx.export": calls("torch.onnx.export"),
        "the transformer optimizer (optimize_model)": calls("optimize_model"),
        "quant_pre_process": calls("quant_pre_process"),
        "onnxruntime quantize_dynamic": calls("quantize_dynamic"),
        "a CalibrationDataReader subclass": lambda f: any(b.endswith("CalibrationDataReader") for b in f.class_bases),
        "quantize_static": calls("quantize_static"),
        "QuantFormat.QDQ": lambda f: f.mentions("QuantFormat.QDQ"),
        "MatMulNBitsQuantizer": calls("MatMulNBitsQuantizer"),
        "SessionOptions": calls("SessionOptions"),
        "InferenceSession": calls("InferenceSession"),
        "OpenVINO convert_model on the ONNX file": calls("convert_model"),
    },
    "05": {
        "TorchAoConfig": calls("TorchAoConfig"),
        "save_pretrained": calls("save_pretrained"),
        "from_pretrained": calls("from_pretrained"),
        "quantize_dynamic (rebuild the int8 structure)": calls("quantize_dynamic"),
        "load_state_dict": calls("load_state_dict"),
        "torch.load(..., weights_only=True)": torch_load_weights_only,
    },
    "06": {
        "torchao quantize_": calls("quantize_"),
        "torch.compile": calls("torch.compile"),
        "prepare_pt2e": calls("prepare_pt2e"),
        "convert_pt2e": calls("convert_pt2e"),
        "a bf16 cast (.to(torch.bfloat16))": bf16_cast,
        "OpenVINO convert_model": calls("convert_model"),
        "nncf.quantize": calls("nncf.quantize"),
        "compile_model with threads and precision hint":
            compile_model_with("INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT"),
        "the ONEDNN_MAX_CPU_ISA table, measured in the run": calls("isa_sensitivity"),
    },
    "07": {
        "torch.export.export": calls("torch.export.export"),
        "X86InductorQuantizer": calls("X86InductorQuantizer"),
        "prepare_pt2e": calls("prepare_pt2e"),
        "convert_pt2e": calls("convert_pt2e"),
        "torch.compile": calls("torch.compile"),
        "QATConfig(..., step='prepare')": qat_step("prepare"),
        "QATConfig(..., step='convert')": qat_step("convert"),
        "quantize_": calls("quantize_"),
    },
}

#: In 06 the learner sees each call before the bench runs every route through helpers.
BEFORE_FIRST = {"06": re.compile(r"\bbench\.run\w*\(")}


def _facts(path):
    out = []
    for index, cell in enumerate(_cells(path)):
        if cell["cell_type"] == "code":
            out.append((index, CellFacts(_code(cell)), "".join(cell["source"])))
    return out


@pytest.mark.parametrize("prefix", sorted(REQUIRED))
def test_the_library_calls_are_in_code_cells(prefix):
    path = next((p for p in NOTEBOOKS if p.name.startswith(prefix)), None)
    assert path is not None, f"notebook {prefix} is missing"
    facts = _facts(path)
    limit = None
    if prefix in BEFORE_FIRST:
        limit = next((i for i, _, src in facts if BEFORE_FIRST[prefix].search(src)), None)
    missing, late = [], []
    for what, predicate in REQUIRED[prefix].items():
        where = [i for i, f, _ in facts if predicate(f)]
        if not where:
            missing.append(what)
        elif limit is not None and min(where) > limit:
            late.append(what)
    assert not missing, f"{path.name}: no code cell shows {missing}"
    assert not late, f"{path.name}: {late} first appear after the bench runs (cell {limit}); show them before it"


def test_notebook_05_leads_the_ways_that_work_with_the_torchao_round_trip():
    """After the collapse (Part 1), the first way that works is Hugging Face's own format: a TorchAoConfig
    round trip, before the torch.ao rebuild-then-load path."""
    path = next(p for p in NOTEBOOKS if p.name.startswith("05"))
    facts = _facts(path)
    round_trip = min(i for i, f, _ in facts if f.call("TorchAoConfig"))
    rebuild = min(i for i, f, _ in facts if torch_load_weights_only(f) and f.call("load_state_dict"))
    assert round_trip < rebuild, (f"{path.name}: the TorchAoConfig round trip (cell {round_trip}) comes after the "
                                  f"rebuild-then-load path (cell {rebuild})")
    headings = [(i, "".join(c["source"]).lstrip()) for i, c in enumerate(_cells(path)) if c["cell_type"] == "markdown"]
    part_2 = next(i for i, text in headings if text.startswith("## Part 2"))
    part_3 = next(i for i, text in headings if text.startswith("## Part 3"))
    assert part_2 < round_trip < part_3, f"{path.name}: the round trip is not in Part 2"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
class TestLearnersPage:
    def test_code_cells_are_short(self, path):
        long = {i: len("".join(c["source"]).splitlines()) for i, c in enumerate(_cells(path))
                if c["cell_type"] == "code" and len("".join(c["source"]).splitlines()) > MAX_CELL_LINES}
        assert not long, f"code cells over {MAX_CELL_LINES} lines (cell index: lines): {long}"

    def test_no_spec_talk(self, path):
        for i, c in enumerate(_cells(path)):
            text = "".join(c["source"]).lower()
            for word in ("acceptance", "the issue", "issue #", "github issue"):
                assert word not in text, f"cell {i} mentions {word!r}: the learner's page is not the spec"

    def test_no_machine_paths_in_outputs(self, path):
        outputs = json.dumps([c.get("outputs", []) for c in _cells(path)])
        for marker in ("/tmp/", "/work/", "/root/", "/home/", "site-packages", "\\\\Users\\\\"):
            assert marker not in outputs, (f"an output shows a machine path ({marker!r}); "
                                           "print paths relative to the repo")

    def test_committed_outputs_come_from_a_full_run(self, path):
        meta = json.loads(path.read_text())["metadata"]
        parameters = meta.get("papermill", {}).get("parameters", {})
        assert parameters.get("SMOKE") is False, "commit the notebook as executed by `make outputs FULL=1`"


# --- verdicts come from paired tests and round-robin timing --------------------------------------------------------

#: A verdict read from two separately computed intervals or latency bands: "overlap", "apart", ``x.agreement_low <=
#: y.agreement_high``, ``a.p90_ms < b.p10_ms``. Variants scored on the same sentences are compared with
#: ``evaluation.paired_comparison``; models whose speeds are compared are timed together with ``measure.round_robin``.
OVERLAP_VERDICT = re.compile(r"\b(agreement|accuracy)_(low|high)\s*[<>]=?\s*[\w\[\]\"']+"
                             r"\.(agreement|accuracy)_(low|high)"
                             r"|\bp(10|90)_ms\s*[<>]=?\s*[\w\[\]\"']+\.p(10|90)_ms")
#: Code cells that still draw such a verdict, per notebook, until they move to the paired test and round-robin
#: timing. The test fails when an entry is stale, so the list only shrinks.
OVERLAP_VERDICTS_LEFT: dict[str, list[int]] = {}


def overlap_verdict_cells(path) -> list[int]:
    return [i for i, c in enumerate(_cells(path)) if c["cell_type"] == "code" and OVERLAP_VERDICT.search(_code(c))]


def test_the_overlap_pattern_finds_what_it_looks_for():
    assert OVERLAP_VERDICT.search("overlap = b.agreement_low <= w.agreement_high")
    assert OVERLAP_VERDICT.search("apart = pick.p90_ms < best.p10_ms or best.p90_ms < pick.p10_ms")
    assert OVERLAP_VERDICT.search('overlap = r["int8"].p10_ms <= r["fp32"].p90_ms')
    assert not OVERLAP_VERDICT.search("print(evaluation.paired_comparison(a, b, ref).describe())")
    assert not OVERLAP_VERDICT.search("low = c.agreement_low")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_verdict_from_overlapping_intervals_or_bands(path):
    found, left = overlap_verdict_cells(path), OVERLAP_VERDICTS_LEFT.get(path.name[:2], [])
    assert found == left, (f"{path.name}: code cells {found} compare two intervals or latency bands (listed as still "
                           f"to migrate: {left}). Compare variants with evaluation.paired_comparison and speeds with "
                           "measure.round_robin; keep OVERLAP_VERDICTS_LEFT in step")
