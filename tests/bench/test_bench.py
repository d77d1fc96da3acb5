"""helpers.bench (its routes registry) and tools.bench: the route registry, failures recorded as data, the typed results
and their JSON/markdown, the quick grid, the performance-target verdict, CLI argument errors and the environment.

The shared tiny BERT (``make_tiny_bert`` in conftest.py) stands in for the fine-tuned MiniLM so the tests run in
seconds; only the tokenizer (packaged, offline) is the real one.
"""

import json
import time
import typing

import pytest
import torch

from helpers import bench, course, cpu, evaluation, measure
from helpers.bench import route_core, routes, runtime_routes
from tools import bench as bench_tool


@pytest.fixture(autouse=True)
def build_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def ctx(make_tiny_bert, course_tokenizer):
    return route_core.Context(make_tiny_bert(), course_tokenizer, max_len=16,
                          calibration_texts=["a fine film", "dull and long"] * 4)


TEXTS = ["a fine film", "dull and long", "I loved every minute", "a waste of time", "not bad", "great cast"]
LABELS = [1, 0, 1, 0, 1, 1]
TINY_GRID = [bench.Point(2, 16, 1), bench.Point(4, 32, 1)]


def _boom(ctx):
    raise ValueError("boom: this route cannot be built")


def _forward_fails(ctx):
    def forward(batch):
        if batch["input_ids"].shape[1] > 16:
            raise IndexError("list index out of range in a fake kernel")
        return torch.zeros(batch["input_ids"].shape[0], 2)
    return route_core.Built(forward, size_bytes=10)


BROKEN = route_core.Route(name="broken", family="torchao", precision="int8 dynamic", compiled=False, build=_boom,
                      description="always raises while building")
LATE = route_core.Route(name="late", family="torchao", precision="int8 dynamic", compiled=False, build=_forward_fails,
                    description="raises at seq 32")


# --- registry ---------------------------------------------------------------------------------------------------

def test_registry_names_order_and_kinds():
    reg = routes.registry()
    names = list(reg)
    assert names[0] == "fp32" and len(names) == len(set(names))
    assert {"bf16", "dynamic-int8-x86", "dynamic-int8-qnnpack", "torchao-da8w8", "torchao-w8-compile",
            "pt2e-x86-static", "ort-fp32", "ort-int8"} <= set(names)
    assert {n for n, r in reg.items() if r.compiled} == {"fp32-compile", "torchao-da8w8-compile",
                                                          "torchao-da8w8-emb8-compile", "torchao-w8-compile",
                                                          "pt2e-x86-static"}
    assert reg["dynamic-int8-x86"].is_int8 and reg["pt2e-x86-static"].is_int8 and not reg["bf16"].is_int8
    assert not reg["ort-fp32"].is_int8 and reg["ort-int8"].is_int8
    assert {"openvino-fp32", "openvino-bf16", "openvino-int8"} <= set(names) and reg["openvino-int8"].is_int8
    # every fp32 baseline the "best fp32 route" is chosen from is an fp32 route of the registry
    assert all(reg[n].precision == "fp32" for n in routes.FP32_BASELINES)
    # the routes without a fast kernel on CPUs lacking bf16 or VNNI say so, and only those
    assert {n for n, r in reg.items() if r.needs} == {"bf16", "openvino-bf16", "torchao-da8w8",
                                                      "torchao-da8w8-compile", "torchao-da8w8-emb8-compile"}


def test_routes_are_built_with_keywords_and_recipes_are_objects():
    with pytest.raises(TypeError):
        route_core.Route("fp32", "baseline", "fp32", False, routes.build_fp32, "positional")
    from helpers import onnx_route

    assert runtime_routes.best_ort_int8_recipe() is onnx_route.BEST_INT8_RECIPE
    assert runtime_routes.dynamic_ort_int8_recipe() is onnx_route.DYNAMIC_INT8_RECIPE
    assert type(routes.int8_dynamic_config()).__name__ == "Int8DynamicActivationInt8WeightConfig"


def test_select_adds_fp32_keeps_order_and_rejects_unknown():
    assert [r.name for r in routes.select(["bf16"])] == ["fp32", "bf16"]
    assert all(not r.compiled for r in routes.select(include_compiled=False))
    with pytest.raises(ValueError, match=r"unknown route\(s\) \['nope'\]; choose from"):
        routes.select(["nope"])


def test_eager_routes_keep_logits_close_and_shrink(ctx):
    batch = ctx.encode(TEXTS, 16)
    ref = routes.build_fp32(ctx)
    with torch.inference_mode():
        want = ref.forward(batch)
        # bf16 halves every weight; int8 shrinks only the Linear layers (the tiny model is mostly embeddings)
        for build, max_size_ratio in ((routes.build_bf16, 0.55), (routes.dynamic_int8_builder("x86"), 0.99)):
            built = build(ctx)
            got = built.forward(batch)
            assert got.dtype == torch.float32 and got.shape == want.shape
            assert (got - want).abs().max().item() < 0.1
            assert built.size_bytes < max_size_ratio * ref.size_bytes
            assert built.build_seconds > 0


def test_torchao_int8_embeddings_shrink_the_tables_and_keep_logits_close(ctx):
    batch = ctx.encode(TEXTS, 16)
    ref = routes.build_fp32(ctx)
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig

    # the config as an object, or as a function that returns it (how the registry defers importing torchao)
    linear_only = routes.torchao_builder(config=Int8DynamicActivationInt8WeightConfig(), compiled=False)(ctx)
    with_tables = routes.torchao_builder(config=routes.int8_dynamic_config, compiled=False,
                                         int8_embeddings=True)(ctx)
    with torch.inference_mode():
        want = ref.forward(batch)
        got = with_tables.forward(batch)
    assert got.shape == want.shape and (got - want).abs().max().item() < 0.1
    # the tiny model is almost all embedding table: only int8 tables bring the file near a quarter of fp32
    assert linear_only.size_bytes > 0.9 * ref.size_bytes
    assert with_tables.size_bytes < 0.30 * ref.size_bytes
    assert with_tables.notes == "Int8DynamicActivationInt8WeightConfig + int8 embeddings, eager"
    assert routes.is_embedding(torch.nn.Embedding(4, 2)) and not routes.is_embedding(torch.nn.Linear(2, 2))


# --- failures are data ------------------------------------------------------------------------------------------

def test_failing_build_is_a_row_with_its_message_and_the_run_goes_on(ctx):
    run = bench.run_routes(ctx, TEXTS, LABELS, [routes.registry()["fp32"], BROKEN, LATE], TINY_GRID, runs=2,
                           warmup=0, progress=False)
    assert [r.route for r in run.routes] == ["fp32", "broken", "late"]
    fp32 = run.row("fp32")
    assert fp32.status == "ok" and len(fp32.latency) == 2 and run.baseline is fp32
    broken = run.row("broken")
    assert broken.status == "failed" and broken.stage == "build"
    assert broken.error.startswith("ValueError: boom: this route cannot be built")
    assert "_boom" in broken.error  # where it was raised
    late = run.row("late")
    assert late.status == "failed" and late.stage == "latency b4 s32 t1"
    assert "IndexError: list index out of range in a fake kernel" in late.error
    assert len(late.latency) == 1  # the grid point measured before the failure is kept


def test_skipped_routes_become_rows_with_the_reason(ctx):
    reg = routes.registry()
    run = bench.run_routes(ctx, TEXTS, LABELS, [reg["fp32"]], TINY_GRID[:1], runs=1, warmup=0, progress=False,
                           skipped=[(reg["pt2e-x86-static"], "skipped in the quick grid")])
    row = run.routes[-1]
    assert row.route == "pt2e-x86-static" and row.status == "skipped" and row.is_int8 and row.compiled
    assert row.error == "skipped in the quick grid" and row.latency == [] and row.predictions is None


def test_routes_are_timed_together_round_by_round_and_one_failing_midway_is_dropped():
    calls = []

    def fake(name, fail_after=None):
        count = [0]

        def forward(batch):
            count[0] += 1
            calls.append(name)
            if fail_after is not None and count[0] > fail_after:
                raise RuntimeError(f"{name} broke on call {count[0]}")
            return torch.zeros(1, 2)
        return forward

    timing, failed = bench.time_together({"fp32": fake("fp32"), "a": fake("a"), "b": fake("b", fail_after=2)}, {},
                                         bench.Point(1, 8, 1), runs=3, warmup=1)
    assert list(failed) == ["b"] and "b broke on call 3" in str(failed["b"])
    assert list(timing.latencies) == ["fp32", "a"] and timing.baseline == "fp32"
    # timed again without b: a warm-up call each, then three rounds in a rotating order
    assert calls[-8:] == ["fp32", "a", "fp32", "a", "a", "fp32", "fp32", "a"]
    assert len(timing.speedups["a"].ratios) == 3
    none_left, failed = bench.time_together({"b": fake("b", fail_after=0)}, {}, bench.Point(1, 8, 1), runs=1, warmup=0)
    assert none_left is None and list(failed) == ["b"]


def test_the_bench_raises_dynamos_recompile_limit_while_every_route_is_held(ctx):
    seen = {}

    def build(ctx):
        seen["build"] = torch._dynamo.config.recompile_limit

        def forward(batch):
            seen["forward"] = torch._dynamo.config.recompile_limit
            return torch.zeros(batch["input_ids"].shape[0], 2)
        return route_core.Built(forward, size_bytes=10)

    probe = route_core.Route(name="probe", family="torchao", precision="int8 dynamic", compiled=True, build=build,
                         description="records dynamo's limit")
    before = torch._dynamo.config.recompile_limit
    bench.run_routes(ctx, TEXTS, LABELS, [probe], TINY_GRID[:1], runs=1, warmup=0, progress=False)
    assert seen == {"build": bench.runner.RECOMPILE_LIMIT, "forward": bench.runner.RECOMPILE_LIMIT} != before
    assert torch._dynamo.config.recompile_limit == before  # restored afterwards


def test_run_rejects_bad_arguments(ctx):
    fp32 = [routes.registry()["fp32"]]
    with pytest.raises(ValueError, match="grid is empty"):
        bench.run_routes(ctx, TEXTS, LABELS, fp32, [], progress=False)
    with pytest.raises(ValueError, match="runs must be >= 1"):
        bench.run_routes(ctx, TEXTS, LABELS, fp32, TINY_GRID, runs=0, progress=False)
    with pytest.raises(ValueError, match="6 texts, 2 labels"):
        bench.run_routes(ctx, TEXTS, LABELS[:2], fp32, TINY_GRID, progress=False)


# --- the results document ---------------------------------------------------------------------------------------

#: The keys of a route row in results.json, in order: schema 1's, then what schema 2 added (the protocol's fields
#: and the target rule); the typed RouteResult must write exactly these.
ROUTE_KEYS = ["route", "family", "precision", "compiled", "description", "status", "error", "stage", "size_bytes",
              "build_s", "first_call_s", "accuracy", "agreement", "latency", "notes", "size_ratio", "accuracy_change",
              "agreement_low", "agreement_high", "accuracy_low", "accuracy_high", "flips", "mcnemar_p", "eval_batch",
              "target_met", "target_reason"]
LATENCY_KEYS = ["batch", "seq", "threads", "first_call_ms", "median_ms", "p10_ms", "p90_ms", "runs", "spread_ms",
                "speedup", "speedup_vs_best_fp32", "speedup_p10", "speedup_p90", "vs_best_fp32_p10", "vs_best_fp32_p90"]


def test_results_json_schema_ratios_and_markdown(ctx, tmp_path):
    reg = routes.registry()
    run = bench.run_routes(ctx, TEXTS, LABELS, [reg["fp32"], reg["dynamic-int8-x86"], BROKEN], TINY_GRID, runs=2,
                           warmup=0, progress=False, settings={"quick": True})
    # predictions and logits stay in the process (typed, for agreement) and never reach the JSON
    assert run.row("fp32").predictions.shape == (len(TEXTS),) and run.row("broken").predictions is None
    assert run.row("fp32").logits.shape == (len(TEXTS), 2)
    json_path, md_path = bench_tool.write(run, tmp_path / "bench")
    assert not list((tmp_path / "bench").glob(".*tmp"))  # atomic writes leave no temporary files
    raw = json.loads(json_path.read_text())
    assert list(raw) == ["schema", "started", "seconds", "environment", "settings", "grid", "routes", "target",
                         "protocol", "best_fp32", "roofline", "isa_sensitivity"]
    assert all(list(r) == ROUTE_KEYS for r in raw["routes"]) and "predictions" not in json_path.read_text()
    assert all(list(p) == LATENCY_KEYS for r in raw["routes"] for p in r["latency"])
    assert raw["schema"] == bench.SCHEMA_VERSION
    assert raw["grid"] == [{"batch": 2, "seq": 16, "threads": 1}, {"batch": 4, "seq": 32, "threads": 1}]
    assert set(raw["environment"]["versions"]) >= {"torch", "torchao", "onnxruntime"}
    assert raw["environment"]["threads"]["available_cpus"] >= 1
    assert raw["protocol"]["eval_batch"] == evaluation.EVAL_BATCH_SIZE and raw["protocol"]["split"] == "test"
    assert raw["protocol"]["target_rule"] == evaluation.target_rule_text()
    assert raw["best_fp32"] == {"b2 s16 t1": "fp32", "b4 s32 t1": "fp32"}  # the only fp32 route that ran
    loaded = bench.load(json_path)  # the JSON read back is the same run, typed
    assert loaded == run and loaded.routes[0].predictions is None
    fp32, int8 = loaded.routes[0], loaded.routes[1]
    for p in fp32.latency:
        assert p.speedup == pytest.approx(1.0) and p.speedup_vs_best_fp32 == pytest.approx(1.0)
        assert p.verdict_vs_best_fp32 is None  # the best fp32 route is not compared with itself
        assert p.p10_ms <= p.median_ms <= p.p90_ms and p.first_call_ms > 0 and p.runs == 2
    for p in int8.latency:  # timed in the same rounds as fp32: a per-round speedup with its band
        assert p.speedup_p10 <= p.speedup <= p.speedup_p90 and p.vs_best_fp32_p10 <= p.speedup_vs_best_fp32
        assert p.verdict_vs_best_fp32 in ("faster", "slower", "band spans 1")
    assert fp32.size_ratio == pytest.approx(1.0) and fp32.agreement == 1.0 and fp32.mcnemar_p == 1.0
    assert fp32.target_met is False and "file 1.00x fp32" in fp32.target_reason  # fp32 is too big for the rule
    assert 0 < int8.size_ratio < 1 and 0 <= int8.agreement <= 1
    assert int8.agreement_low <= int8.agreement <= int8.agreement_high and int8.eval_batch == 32
    assert int8.accuracy_low <= int8.accuracy <= int8.accuracy_high and 0 <= int8.mcnemar_p <= 1
    assert int8.accuracy_change == pytest.approx(int8.accuracy - fp32.accuracy)
    assert loaded.routes[2].size_ratio is None and loaded.routes[2].target_met is None
    # the tiny grid has no b32 s128 t1 point: the target is honestly not evaluated
    assert loaded.target.evaluated is False and "does not include b32 s128 t1" in loaded.target.reason
    assert raw["target"]["target_speedup"] == bench.TARGET.speedup and raw["target"]["speedup"] is None
    assert raw["target"]["min_agreement"] == evaluation.TARGET_AGREEMENT
    md = md_path.read_text()
    assert "| route |" in md and "dynamic-int8-x86" in md and "ValueError: boom" in md
    assert "| × best fp32 |" in md and "| speedup ×fp32 |" in md and evaluation.target_rule_text() in md
    assert "## Target: NOT EVALUATED" in md and "## Recommendation" in md
    assert course.describe_environment(run.environment) in md


def test_load_explains_a_missing_file_and_an_old_schema(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make bench`"):
        bench.load(tmp_path / "nothing.json")
    (tmp_path / "old.json").write_text(json.dumps({"schema": bench.SCHEMA_VERSION - 1}))
    with pytest.raises(ValueError, match=rf"has schema {bench.SCHEMA_VERSION - 1}, this code reads schema "
                                         rf"{bench.SCHEMA_VERSION}; rerun make bench"):
        bench.load(tmp_path / "old.json")


def _comparison(agreement: float, n: int = 1000) -> evaluation.Comparison:
    """A test-split comparison whose agreement is ``agreement`` (predictions flipped on the first sentences)."""
    reference = torch.tensor([[0.0, 1.0]] * n)
    flips = round((1 - agreement) * n)
    logits = reference.clone()
    logits[:flips] = torch.tensor([1.0, 0.0])
    return evaluation.compare(reference, logits, [1] * n, split="test")


def _fake_run(rows):
    """A run at the target point from (name, precision, ms, agreement, size, compiled) rows."""
    point = bench.Point(32, 128, 1)
    results = []
    for name, precision, ms, agreement, size, compiled in rows:
        row = bench.RouteResult(route=name, family="x", precision=precision, compiled=compiled, description="",
                                size_bytes=size, first_call_s=0.1,
                                latency=[bench.LatencyPoint.measured(point, measure.summarize([ms], 1), 1.0)])
        row.record_comparison(_comparison(agreement))
        results.append(row)
    best = bench.add_ratios(results)
    run = bench.BenchRun("now", 1.0, {}, {}, [point], results, best_fp32=best)
    run.target = bench.evaluate_target(run)
    return run


def test_two_speedups_against_eager_and_the_best_fp32_route_of_the_run():
    run = _fake_run([("fp32", "fp32", 1000.0, 1.0, 100, False), ("ort-fp32", "fp32", 500.0, 1.0, 100, False),
                     ("openvino-fp32", "fp32", 400.0, 1.0, 100, False), ("int8", "int8 static", 100.0, 1.0, 25, False),
                     ("bf16", "bf16", 50.0, 1.0, 50, False)])  # bf16 is faster but not an fp32 route
    int8 = bench.latency_at(run.row("int8"), 32, 128, 1)
    assert int8.speedup == pytest.approx(10.0) and int8.speedup_vs_best_fp32 == pytest.approx(4.0)
    assert run.best_fp32 == {"b32 s128 t1": "openvino-fp32"}
    assert bench.latency_at(run.row("fp32"), 32, 128, 1).speedup_vs_best_fp32 == pytest.approx(0.4)
    assert bench.best_fp32_routes(run.routes)[bench.Point(32, 128, 1)] == (400.0, "openvino-fp32")
    rows = {r["route"]: r for r in bench.summary_rows(run)}
    assert rows["int8"]["× best fp32"] == pytest.approx(4.0) and rows["int8"]["speedup ×fp32"] == pytest.approx(10)


def test_target_needs_the_rule_and_both_speedups():
    run = _fake_run([("fp32", "fp32", 1000.0, 1.0, 100, False), ("ort-fp32", "fp32", 500.0, 1.0, 100, False),
                     ("fast-unfaithful", "int8 dynamic", 100.0, 0.98, 25, True),  # 10x, agreement below 0.99
                     ("good", "int8 static", 180.0, 0.995, 26, True),           # 5.6x eager, 2.8x best fp32
                     ("bf16", "bf16", 150.0, 1.0, 50, False)])                  # not int8: never the target route
    assert run.row("fast-unfaithful").target_met is False and "agreement 0.980 (< 0.99)" in \
        run.row("fast-unfaithful").target_reason
    tgt = run.target
    assert tgt.evaluated and tgt.met and tgt.route == "good" and tgt.best_fp32_route == "ort-fp32"
    assert tgt.speedup == pytest.approx(1000 / 180) and tgt.speedup_vs_best_fp32 == pytest.approx(500 / 180)
    assert "(target 5.0x)" in tgt.reason and "the best fp32 route ort-fp32 (target 2.5x)" in tgt.reason
    assert bench.TargetVerdict.from_dict(tgt.as_dict()) == tgt
    # fast against eager, but not 2.5x the best fp32 route
    slow = _fake_run([("fp32", "fp32", 1000.0, 1.0, 100, False), ("ort-fp32", "fp32", 300.0, 1.0, 100, False),
                      ("good", "int8 static", 180.0, 0.995, 26, True)])
    assert slow.target.evaluated and not slow.target.met and slow.target.route == "good"
    big = _fake_run([("fp32", "fp32", 1000.0, 1.0, 100, False), ("int8", "int8 dynamic", 100.0, 1.0, 50, False)])
    assert not big.target.met and big.target.route is None
    assert "file 0.50x fp32 (> 0.30x)" in big.row("int8").target_reason
    assert big.target.reason == ("no int8 route passed the rule: agreement >= 0.99 on the test split and a file "
                                 "<= 0.30x fp32's")


def test_target_words_come_from_the_target_numbers():
    loose = bench.Target(min_agreement=0.95, speedup=2.0)
    assert bench.TARGET.band == "agreement >= 0.99" and loose.band == "agreement >= 0.95"
    run = _fake_run([("fp32", "fp32", 1000.0, 1.0, 100, False), ("int8", "int8 dynamic", 400.0, 0.97, 25, False)])
    assert bench.recommend(run, loose)[0].startswith("Fastest with agreement >= 0.95: int8 — 2.50x fp32 eager")
    assert any(line == "Agreement below 0.99: int8 (0.9700)" for line in bench.recommend(run))


def test_recommendation_is_derived_from_the_table():
    run = _fake_run([("fp32", "fp32", 1000.0, 1.0, 100, False),
                     ("bf16", "bf16", 300.0, 1.0, 50, False),
                     ("int8-a", "int8 dynamic", 500.0, 0.995, 25, False),
                     ("int8-b", "int8 static", 400.0, 0.90, 24, True),
                     ("slowpoke", "int8 dynamic", 2000.0, 1.0, 25, False)])
    lines = bench.recommend(run)
    assert lines[0].startswith("Fastest with agreement >= 0.99: bf16 — 3.33x fp32 eager (3.33x the best fp32 route)")
    assert any(line.startswith("Fastest int8 with agreement >= 0.99: int8-a — 2.00x") for line in lines)
    assert any("Agreement below 0.99: int8-b (0.9000)" in line for line in lines)
    run.routes[1].family = "openvino"  # an exported route is never "the fastest plain-PyTorch eager route"
    assert not any("eager route" in line and "bf16" in line for line in bench.recommend(run))
    assert any("Slower than fp32 eager here: slowpoke (0.50x)" in line for line in lines)


# --- grid and CLI ---------------------------------------------------------------------------------------------

def test_run_classifier_uses_the_notebook_classifier_skips_and_adds_the_roofline(make_tiny_bert, course_tokenizer,
                                                                                 monkeypatch, capsys):
    from helpers import data, finetune, roofline

    model = make_tiny_bert(max_position_embeddings=128)  # the quick grid runs at sequence length 128
    split = data.Split(TEXTS, LABELS, name="test")
    train = data.Split(TEXTS * 12, LABELS * 12, name="train")
    seen = {}

    def load_for_notebook(smoke, test_examples=None, progress=True):
        seen.update(smoke=smoke, test_examples=test_examples)
        return finetune.NotebookClassifier(model, course_tokenizer, finetune.SMOKE,
                                           {"train": train, "validation": split, "test": split}, split.head(4),
                                           {"from_cache": True, "path": "x", "history": [], "train_seconds": 0},
                                           split)

    monkeypatch.setattr(finetune, "load_for_notebook", load_for_notebook)
    monkeypatch.setattr(cpu, "features", lambda: {"avx2": True})  # a CPU without bf16 or VNNI
    class SmallProbes(bench.ceiling.RoofProbes):  # the bench's probes on a small GEMM and a 1 MiB copy
        def __init__(self):
            super().__init__(copy_bytes=1 << 20, shape=(64, 64, 64), max_call_s=None)

    monkeypatch.setattr(bench.ceiling, "RoofProbes", SmallProbes)
    run = bench.run_classifier(quick=True, route_names=["bf16", "dynamic-int8-fbgemm", "torchao-w8-compile"],
                               runs=1, test_examples=4, threads=1, progress=False)
    assert seen == {"smoke": True, "test_examples": 4}
    assert [(r.route, r.status) for r in run.routes] == [
        ("fp32", "ok"), ("bf16", "skipped"), ("dynamic-int8-fbgemm", "ok"), ("torchao-w8-compile", "skipped")]
    assert "avx512_bf16" in run.row("bf16").error and "torch.compile" in run.row("torchao-w8-compile").error
    assert run.settings["test_examples"] == 4 and run.protocol["examples"] == 4
    assert run.grid == bench.grid(quick=True, threads=1) and run.settings["smoke_classifier"] is True
    assert run.target.evaluated  # the quick grid holds the target point
    assert "threads: torch intra-op" in capsys.readouterr().out  # the environment is printed first
    # the roofline: peaks by precision and threads, GOPs per grid point, each route's fraction of its own peak
    roof = run.roofline
    assert set(roof["peaks"]) == {"fp32", "bf16", "int8"} and set(roof["peaks"]["int8"]) == {"1"}
    assert roof["kernels"]["int8"]["1"] in roofline.INT8_KERNELS.values()
    assert set(roof["model_gops"]) == {"b32 s128", "b1 s128"} and set(roof["routes"]) == {"fp32", "dynamic-int8-fbgemm"}
    entry = roof["routes"]["dynamic-int8-fbgemm"]["b32 s128 t1"]
    assert entry["peak_precision"] == "int8" and entry["precision_peak"] == roof["peaks"]["int8"]["1"]
    ms = bench.latency_at(run.row("dynamic-int8-fbgemm"), 32, 128, 1).median_ms
    assert entry["achieved_gops"] == pytest.approx(roof["model_gops"]["b32 s128"] / (ms / 1e3))
    rows = {r["route"]: r for r in bench.summary_rows(run)}
    assert rows["dynamic-int8-fbgemm"]["roofline fraction"] == pytest.approx(entry["fraction"])
    assert [r["route"] for r in bench.ceiling.rows(run)] == ["fp32", "dynamic-int8-fbgemm"]
    md = bench_tool.to_markdown(run)
    assert "## Roofline at b32 s128 t1" in md and "fraction of roof" in md


def test_a_route_the_cpu_lacks_a_capability_for_is_skipped_with_the_reason(ctx):
    needs_bf16 = route_core.Route(name="needs-bf16", family="torchao", precision="bf16", compiled=False,
                              build=routes.build_bf16, description="", needs=("bf16",))
    plan = [routes.registry()["fp32"], needs_bf16]
    without = bench.run_routes(ctx, TEXTS, LABELS, plan, TINY_GRID[:1], runs=1, warmup=0, progress=False,
                               features={"avx2": True})
    row = without.row("needs-bf16")
    assert row.status == "skipped" and "avx512_bf16, amx_bf16 or ARM bf16" in row.error and row.latency == []
    with_bf16 = bench.run_routes(ctx, TEXTS, LABELS, plan, TINY_GRID[:1], runs=1, warmup=0, progress=False,
                                 features={"avx512_bf16": True})
    assert with_bf16.row("needs-bf16").status == "ok"
    has = route_core.has_capability
    assert has("int8-dot", {"avx_vnni": True}) and not has("int8-dot", {})
    assert has("int8-dot", {"asimddp": True}) and has("bf16", {"bf16": True})
    with pytest.raises(ValueError, match="unknown capability"):
        route_core.has_capability("fp8", {})


def _sleeper(seconds_per_token: float):
    def build(ctx):
        def forward(batch):
            if seconds_per_token:
                time.sleep(seconds_per_token * batch["input_ids"].numel())
            return torch.zeros(batch["input_ids"].shape[0], 2)
        return route_core.Built(forward, size_bytes=10)
    return build


def test_a_route_over_the_time_budget_is_skipped_before_its_costly_point(ctx):
    sleepy = route_core.Route(name="sleepy", family="torchao", precision="int8 dynamic", compiled=False,
                          build=_sleeper(5e-3), description="5 ms per token")
    quick = route_core.Route(name="quick", family="torchao", precision="int8 dynamic", compiled=False,
                         build=_sleeper(0), description="no time per token")
    grid = [bench.Point(64, 32, 1), bench.Point(1, 8, 1)]  # the cheap point is measured first
    run = bench.run_routes(ctx, TEXTS, LABELS, [sleepy, quick], grid, runs=2, warmup=0, progress=False, budget_s=5.0)
    row = run.row("sleepy")
    # b1 s8: 40 ms a call; b64 s32 would take 3 calls x 10 s > 5 s
    assert row.status == "skipped" and row.stage == "latency b64 s32 t1" and "budget of 5 s" in row.error
    assert row.error.startswith("too slow on this CPU: timing b64 s32 t1 would take about")
    assert [p.point for p in row.latency] == [bench.Point(1, 8, 1)]
    assert run.row("quick").status == "ok", run.row("quick").error
    # fp32 eager is every comparison's reference: the budget never skips it
    slow_fp32 = route_core.Route(name="fp32", family="baseline", precision="fp32", compiled=False, build=_sleeper(5e-3),
                             description="a slow baseline")
    small = [bench.Point(16, 8, 1), bench.Point(1, 8, 1)]  # b16 s8: 2 calls x 0.64 s, over a 0.3 s budget
    assert bench.run_routes(ctx, TEXTS, LABELS, [slow_fp32], small, runs=1, warmup=0, progress=False,
                            budget_s=0.3).row("fp32").status == "ok"
    assert [p.point for p in run.row("quick").latency] == grid  # grid order


def test_scores_follow_the_protocol_and_repeat_exactly(ctx):
    reg = routes.registry()
    first = bench.run_routes(ctx, TEXTS, LABELS, [reg["fp32"], reg["dynamic-int8-x86"]], TINY_GRID[:1], runs=1,
                             warmup=0, progress=False)
    again = bench.run_routes(ctx, TEXTS, LABELS, [reg["fp32"], reg["dynamic-int8-x86"]], TINY_GRID[:1], runs=1,
                             warmup=0, progress=False)
    fp32, int8 = first.row("fp32"), first.row("dynamic-int8-x86")
    want = evaluation.predict_logits(ctx.model, ctx.tokenizer, TEXTS, ctx.max_len)  # batch 32, padded to max_len
    assert torch.equal(fp32.logits, want)
    assert int8.comparison == evaluation.compare(want, int8.logits, LABELS, split="test")
    assert torch.equal(int8.logits, again.row("dynamic-int8-x86").logits)  # a fixed batch: the same scores twice
    assert int8.agreement == again.row("dynamic-int8-x86").agreement


def test_openvino_routes_build_and_agree_with_fp32(ctx):
    reg = routes.registry()
    batch = ctx.encode(TEXTS, 16)
    with torch.inference_mode():
        want = routes.build_fp32(ctx).forward(batch)
    for name in ("openvino-fp32", "openvino-int8"):
        built = reg[name].build(ctx)
        with measure.num_threads(1):
            got = built.forward(batch)
        assert got.shape == want.shape and got.dtype == torch.float32
        assert (got - want).abs().max().item() < (1e-3 if name == "openvino-fp32" else 0.5)
        assert built.size_bytes > 0
    assert "8 train sentences" in built.notes  # NNCF calibrated on every train sentence given, never more


def test_quick_grid_is_small_and_holds_the_target_point():
    assert bench.TARGET.point == bench.Point(32, 128, 1)
    quick = bench.grid(quick=True, threads=4)
    assert quick == [bench.Point(32, 128, 1), bench.Point(1, 128, 1), bench.Point(1, 128, 4)]
    full = bench.grid(quick=False, threads=4)
    assert len(full) == 8 and {(p.batch, p.seq, p.threads) for p in full} >= {(1, 64, 1), (32, 128, 4)}
    assert bench.grid(quick=True, threads=1) == [bench.Point(32, 128, 1), bench.Point(1, 128, 1)]
    assert bench.settings_for(True)["runs"] < bench.settings_for(False)["runs"]


@pytest.mark.parametrize("argv, message", [
    (["--routes", "fp32,nope"], "unknown route(s) ['nope']"),
    (["--routes", ","], "--routes is empty"),
    (["--runs", "0"], "--runs must be >= 1, got 0"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--quick", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_cli_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_tool.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_isa_sensitivity_is_recorded_or_its_error_is(monkeypatch, ctx):
    from helpers.bench import isa

    row = isa.IsaRow("AVX2", "Intel AVX2", False, "gemm:jit", 10.0, 4.0, 1.0, 0.5, 1, (64, 64, 64), 3)
    monkeypatch.setattr(isa, "isa_sensitivity", lambda runs, timeout_s: isa.IsaRows([row]))
    assert bench.ceiling.isa_record(runs=3) == {"rows": [row.as_dict()]}
    run = bench.run_routes(ctx, TEXTS, LABELS, [routes.registry()["fp32"]], TINY_GRID[:1], runs=1, warmup=0,
                           progress=False)
    run.isa_sensitivity = bench.ceiling.isa_record(runs=3)
    md = bench_tool.to_markdown(run)
    assert "ONEDNN_MAX_CPU_ISA caps" in md and "| AVX2 |" in md and "2.5" in md  # 10 ms / 4 ms

    def fails(runs, timeout_s):
        raise isa.IsaProbeError("the AVX2 child failed with exit status 1\nmore")
    monkeypatch.setattr(isa, "isa_sensitivity", fails)
    assert bench.ceiling.isa_record(runs=3) == {"error": "IsaProbeError: the AVX2 child failed with exit status 1"}
    skipped = "ONEDNN_MAX_CPU_ISA caps x86 instruction sets; this CPU is aarch64"
    monkeypatch.setattr(isa, "isa_sensitivity", lambda runs, timeout_s: isa.IsaRows(skipped=skipped))
    assert bench.ceiling.isa_record(runs=3) == {"error": skipped}  # on ARM: a reason, not a KeyError in the report


def test_cli_list(capsys):
    assert bench_tool.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "pt2e-x86-static" in out and "compiled" in out and "ort-int8" in out


# --- the environment the numbers depend on ----------------------------------------------------------------------

def test_migration_table_checks_the_installed_apis():
    rows = routes.migration_table()
    assert len(rows) == len(routes.MIGRATION)
    first = rows[0]
    import torchao

    state_old = first[f"torch {torch.__version__.split('+')[0]}"]
    state_new = first[f"torchao {torchao.__version__}"]
    assert state_old == "present, deprecated"  # torch 2.13 warns "torch.ao.quantization is deprecated"
    assert state_new == "present"
    assert routes.api_state("torchao.quantization:NoSuchConfig") == "missing (AttributeError)"
    assert routes.api_state("no_such_module:thing") == "missing (ModuleNotFoundError)"


def test_roofline_probes_are_timed_in_the_same_rounds_as_the_routes(ctx):
    from helpers.bench import ceiling

    calls = []

    class LoggedProbes(ceiling.RoofProbes):
        def callables(self, threads):
            def logged(name, fn):
                return lambda: (calls.append(name), fn())[1]
            return {name: logged(name, fn) for name, fn in super().callables(threads).items()}

    fp32 = routes.registry()["fp32"]
    logged_fp32 = route_core.Route(name="fp32", family=fp32.family, precision="fp32", compiled=False, description="",
                               build=lambda c: (lambda b: route_core.Built(lambda batch: (calls.append("fp32"),
                                                                                       b.forward(batch))[1],
                                                                       b.size_bytes))(fp32.build(c)))
    probes = LoggedProbes(("fp32", "int8"), copy_bytes=1 << 20, shape=(64, 32, 48), max_call_s=None)
    run = bench.run_routes(ctx, TEXTS, LABELS, [logged_fp32], TINY_GRID, runs=3, warmup=0, progress=False,
                           roofline=probes)
    timed = list(calls)
    # each grid point: one untimed first call of fp32, then 3 rounds that call fp32 and every probe once
    per_round = 1 + len(probes.callables(1))
    for point in range(len(TINY_GRID)):
        block = timed[point * (1 + 3 * per_round):(point + 1) * (1 + 3 * per_round)]
        rounds = [block[1 + r * per_round:1 + (r + 1) * per_round] for r in range(3)]
        assert all("fp32" in r and ceiling.COPY in r and len(set(r)) == per_round for r in rounds)
    assert run.roofline is not None and run.roofline["bandwidth_bytes_s"] > 0
    measured = run.roofline["peak_measurements"]
    assert {p["precision"] for p in measured} == {"fp32", "int8"}
    assert all(p["same_rounds_as_routes"] for p in measured)
    assert ceiling.peaks_at(run, 1)["fp32"].gops == run.roofline["peaks"]["fp32"]["1"]
    assert set(run.roofline["routes"]["fp32"]) == {p.label for p in TINY_GRID}


def test_compiled_torchao_routes_trace_with_freezing_set_globally(ctx, monkeypatch):
    """Dynamo reads the global freezing flag while tracing (options={"freezing": True} reaches Inductor only), so
    the compiled torchao routes must call their program with it set, and leave it as it was."""
    import torch._inductor.config as inductor_config

    seen = []

    def fake_compile(model, **kwargs):
        assert "options" not in kwargs

        def program(**batch):
            seen.append(inductor_config.freezing)
            return model(**batch)
        return program

    monkeypatch.setattr(torch, "compile", fake_compile)
    before = inductor_config.freezing
    built = routes.registry()["torchao-w8-compile"].build(ctx)
    built.forward(ctx.encode(TEXTS[:2], 16))
    assert seen == [True] and inductor_config.freezing == before
    assert built.notes.endswith("torch.compile (freezing)")


@pytest.mark.parametrize("field, value", [("family", "tensorrt"), ("precision", "int4"), ("needs", ("amx",))])
def test_a_route_with_an_unknown_name_is_refused(field, value):
    fields = {"name": "new", "family": "torchao", "precision": "int8 dynamic", "compiled": False,
              "build": lambda ctx: None, "description": "", field: value}
    with pytest.raises(ValueError, match=f"unknown {'capability' if field == 'needs' else field}"):
        route_core.Route(**fields)


def test_every_capability_has_a_reason_and_a_check():
    names = set(typing.get_args(route_core.Capability))
    assert names == set(route_core.CAPABILITIES) == set(route_core.CAPABILITY_CHECKS)
    from helpers.bench import reading

    assert set(reading.EXPORTED_FAMILIES) <= set(typing.get_args(route_core.Family))
