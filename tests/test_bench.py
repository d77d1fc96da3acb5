"""helpers.routes, helpers.bench and tools.bench: the route registry, failures recorded as data, the typed results
and their JSON/markdown, the quick grid, the performance-target verdict, CLI argument errors and the environment.

The shared tiny BERT (``make_tiny_bert`` in conftest.py) stands in for the fine-tuned MiniLM so the tests run in
seconds; only the tokenizer (packaged, offline) is the real one.
"""

import json

import pytest
import torch

from helpers import bench, course, measure, routes
from tools import bench as bench_tool


@pytest.fixture(autouse=True)
def build_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8_COURSE_BUILD", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def ctx(make_tiny_bert, course_tokenizer):
    return routes.Context(make_tiny_bert(), course_tokenizer, max_len=16,
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
    return routes.Built(forward, size_bytes=10)


BROKEN = routes.Route(name="broken", family="test", precision="int8 dynamic", compiled=False, build=_boom,
                      description="always raises while building")
LATE = routes.Route(name="late", family="test", precision="int8 dynamic", compiled=False, build=_forward_fails,
                    description="raises at seq 32")


# --- registry ---------------------------------------------------------------------------------------------------

def test_registry_names_order_and_kinds():
    reg = routes.registry()
    names = list(reg)
    assert names[0] == "fp32" and len(names) == len(set(names))
    assert {"bf16", "dynamic-int8-x86", "dynamic-int8-qnnpack", "torchao-da8w8", "torchao-w8-compile",
            "pt2e-x86-static", "ort-fp32", "ort-int8"} <= set(names)
    assert {n for n, r in reg.items() if r.compiled} == {"torchao-da8w8-compile", "torchao-da8w8-emb8-compile",
                                                          "torchao-w8-compile", "pt2e-x86-static"}
    assert reg["dynamic-int8-x86"].is_int8 and reg["pt2e-x86-static"].is_int8 and not reg["bf16"].is_int8
    assert not reg["ort-fp32"].is_int8 and reg["ort-int8"].is_int8


def test_routes_are_built_with_keywords_and_recipes_are_objects():
    with pytest.raises(TypeError):
        routes.Route("fp32", "baseline", "fp32", False, routes.build_fp32, "positional")
    from helpers import onnx_route

    assert routes.best_ort_int8_recipe() is onnx_route.BEST_INT8_RECIPE
    assert routes.dynamic_ort_int8_recipe() is onnx_route.DYNAMIC_INT8_RECIPE
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


def test_run_rejects_bad_arguments(ctx):
    fp32 = [routes.registry()["fp32"]]
    with pytest.raises(ValueError, match="grid is empty"):
        bench.run_routes(ctx, TEXTS, LABELS, fp32, [], progress=False)
    with pytest.raises(ValueError, match="runs must be >= 1"):
        bench.run_routes(ctx, TEXTS, LABELS, fp32, TINY_GRID, runs=0, progress=False)
    with pytest.raises(ValueError, match="6 texts, 2 labels"):
        bench.run_routes(ctx, TEXTS, LABELS[:2], fp32, TINY_GRID, progress=False)


# --- the results document ---------------------------------------------------------------------------------------

#: The keys of a route row in results.json (schema 1), in order; the typed RouteResult must write exactly these.
ROUTE_KEYS = ["route", "family", "precision", "compiled", "description", "status", "error", "stage", "size_bytes",
              "build_s", "first_call_s", "accuracy", "agreement", "latency", "notes", "size_ratio", "accuracy_change"]
LATENCY_KEYS = ["batch", "seq", "threads", "first_call_ms", "median_ms", "p10_ms", "p90_ms", "runs", "spread_ms",
                "speedup"]


def test_results_json_schema_ratios_and_markdown(ctx, tmp_path):
    reg = routes.registry()
    run = bench.run_routes(ctx, TEXTS, LABELS, [reg["fp32"], reg["dynamic-int8-x86"], BROKEN], TINY_GRID, runs=2,
                           warmup=0, progress=False, settings={"quick": True})
    # predictions stay in the process (typed, for agreement) and never reach the JSON
    assert run.row("fp32").predictions.shape == (len(TEXTS),) and run.row("broken").predictions is None
    json_path, md_path = bench_tool.write(run, tmp_path / "bench")
    assert not list((tmp_path / "bench").glob(".*tmp"))  # atomic writes leave no temporary files
    raw = json.loads(json_path.read_text())
    assert list(raw) == ["schema", "started", "seconds", "environment", "settings", "grid", "routes", "target"]
    assert all(list(r) == ROUTE_KEYS for r in raw["routes"]) and "predictions" not in json_path.read_text()
    assert all(list(p) == LATENCY_KEYS for r in raw["routes"] for p in r["latency"])
    assert raw["schema"] == bench.SCHEMA_VERSION
    assert raw["grid"] == [{"batch": 2, "seq": 16, "threads": 1}, {"batch": 4, "seq": 32, "threads": 1}]
    assert set(raw["environment"]["versions"]) >= {"torch", "torchao", "onnxruntime"}
    assert raw["environment"]["threads"]["available_cpus"] >= 1
    loaded = bench.load(json_path)  # the JSON read back is the same run, typed
    assert loaded == run and loaded.routes[0].predictions is None
    fp32, int8 = loaded.routes[0], loaded.routes[1]
    for p in fp32.latency:
        assert p.speedup == pytest.approx(1.0)
        assert p.p10_ms <= p.median_ms <= p.p90_ms and p.first_call_ms > 0 and p.runs == 2
    assert fp32.size_ratio == pytest.approx(1.0) and fp32.agreement == 1.0
    assert 0 < int8.size_ratio < 1 and 0 <= int8.agreement <= 1
    assert int8.accuracy_change == pytest.approx(int8.accuracy - fp32.accuracy)
    assert loaded.routes[2].size_ratio is None
    # the tiny grid has no b32 s128 t1 point: the target is honestly not evaluated
    assert loaded.target.evaluated is False and "does not include b32 s128 t1" in loaded.target.reason
    assert raw["target"]["target_speedup"] == bench.TARGET.speedup and raw["target"]["speedup"] is None
    md = md_path.read_text()
    assert "| route |" in md and "dynamic-int8-x86" in md and "ValueError: boom" in md
    assert "## Target: NOT EVALUATED" in md and "## Recommendation" in md
    assert course.describe_environment(run.environment) in md


def test_load_explains_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make bench`"):
        bench.load(tmp_path / "nothing.json")
    (tmp_path / "old.json").write_text(json.dumps({"schema": 0}))
    with pytest.raises(ValueError, match="has schema 0, this code reads 1; rerun make bench"):
        bench.load(tmp_path / "old.json")


def _fake_run(rows):
    point = bench.Point(32, 128, 1)
    results = [bench.RouteResult(route=name, family="x", precision=precision, compiled=compiled, description="",
                                 size_bytes=size, accuracy=acc, agreement=1.0, first_call_s=0.1,
                                 latency=[bench.LatencyPoint.measured(point, measure.summarize([ms], 1), 1.0)])
               for name, precision, ms, acc, size, compiled in rows]
    bench.add_ratios(results)
    return bench.BenchRun("now", 1.0, {}, {}, [point], results)


def test_target_met_only_with_speed_accuracy_and_size():
    run = _fake_run([("fp32", "fp32", 1000.0, 0.80, 100, False),
                     ("fast-lossy", "int8 dynamic", 200.0, 0.70, 25, True),   # 5x but loses 10 points
                     ("good", "int8 static", 300.0, 0.798, 26, True),         # 3.33x, -0.2 point, 0.26x size
                     ("bf16", "bf16", 250.0, 0.80, 50, False)])              # not int8: never the target route
    tgt = bench.evaluate_target(run)
    assert tgt.evaluated and tgt.met and tgt.route == "good"
    assert tgt.speedup == pytest.approx(1000 / 300) and tgt.target is bench.TARGET
    run.routes[2].size_ratio = 0.5
    assert not bench.evaluate_target(run).met  # fast enough, but the file is too big
    slow = _fake_run([("fp32", "fp32", 1000.0, 0.80, 100, False), ("int8", "int8 dynamic", 600.0, 0.80, 25, False)])
    tgt = bench.evaluate_target(slow)
    assert not tgt.met and "1.67x fp32 eager (target 3.0x)" in tgt.reason
    lossy = _fake_run([("fp32", "fp32", 1000.0, 0.80, 100, False), ("int8", "int8 dynamic", 200.0, 0.79, 25, False)])
    assert bench.evaluate_target(lossy).reason == "no int8 route kept accuracy within 0.5 point of fp32"


def test_target_words_come_from_the_target_numbers():
    wide = bench.Target(max_accuracy_drop=0.02, speedup=2.0)
    assert bench.TARGET.band == "0.5 point" and wide.band == "2 points"
    run = _fake_run([("fp32", "fp32", 1000.0, 0.80, 100, False), ("int8", "int8 dynamic", 400.0, 0.79, 25, False)])
    assert bench.evaluate_target(run).route is None  # -1 point: outside the default 0.5-point band
    tgt = bench.evaluate_target(run, wide)
    assert tgt.met and tgt.route == "int8" and "(target 2.0x)" in tgt.reason
    assert tgt.as_dict()["max_accuracy_drop"] == 0.02 and tgt.as_dict()["target_speedup"] == 2.0
    assert bench.recommend(run, wide)[0].startswith("Fastest within 2 points of fp32: int8")
    assert bench.TargetVerdict.from_dict(tgt.as_dict()) == tgt


def test_recommendation_is_derived_from_the_table():
    run = _fake_run([("fp32", "fp32", 1000.0, 0.80, 100, False),
                     ("bf16", "bf16", 300.0, 0.80, 50, False),
                     ("int8-a", "int8 dynamic", 500.0, 0.799, 25, False),
                     ("int8-b", "int8 static", 400.0, 0.70, 24, True),
                     ("slowpoke", "int8 dynamic", 2000.0, 0.80, 25, False)])
    lines = bench.recommend(run)
    assert lines[0].startswith("Fastest within 0.5 point of fp32: bf16 — 3.33x")
    assert any(line.startswith("Fastest int8 within 0.5 point: int8-a — 2.00x") for line in lines)
    assert any("Lost more than 0.5 point: int8-b (-10.0)" in line for line in lines)
    assert any("Slower than fp32 eager here: slowpoke (0.50x)" in line for line in lines)
    # bf16 is at least as accurate as every route and faster than all of them: it alone is on the front
    assert bench.pareto_front(run) == ["bf16"]
    run.routes[3].accuracy = 0.9  # now int8-b is the most accurate: it joins the front
    assert bench.pareto_front(run) == ["bf16", "int8-b"]


def test_profile_ops_names_the_quantized_kernels(ctx):
    rows = bench.profile_ops(routes.registry()["dynamic-int8-x86"], ctx, TEXTS, bench.Point(4, 16, 1), top=30)
    assert rows and all(r["self ms"] >= 0 for r in rows)
    assert sum(r["share"] for r in rows) <= 1.0 + 1e-9
    assert any("quantized::linear_dynamic" in r["operator"] for r in rows)


# --- grid and CLI ---------------------------------------------------------------------------------------------

def test_run_classifier_skips_compiled_routes_in_quick_mode(make_tiny_bert, course_tokenizer, monkeypatch, capsys):
    from helpers import finetune

    model = make_tiny_bert(max_position_embeddings=128)  # the quick grid runs at sequence length 128
    monkeypatch.setattr(finetune, "get_classifier", lambda config, progress=True: (model, course_tokenizer, {}))
    run = bench.run_classifier(quick=True, route_names=["bf16", "torchao-w8-compile"], runs=1, test_examples=8,
                               threads=1, progress=False)
    assert [(r.route, r.status) for r in run.routes] == [("fp32", "ok"), ("bf16", "ok"),
                                                         ("torchao-w8-compile", "skipped")]
    assert "torch.compile" in run.routes[2].error and run.settings["test_examples"] == 8
    assert run.grid == bench.grid(quick=True, threads=1) and run.settings["smoke_classifier"] is True
    assert run.target.evaluated  # the quick grid holds the target point
    assert "threads: torch intra-op" in capsys.readouterr().out  # the environment is printed first


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


def test_cli_list(capsys):
    assert bench_tool.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "pt2e-x86-static" in out and "compiled" in out and "ort-int8" in out


# --- the environment the numbers depend on ----------------------------------------------------------------------

def test_environment_description_names_versions_threads_and_the_notable_flags():
    env = course.environment()
    assert set(env) == {"versions", "cpu", "threads", "quantized_engine", "platform"}
    assert list(env["versions"])[:2] == ["python", "torch"] and set(course.VERSIONED) <= set(env["versions"])
    assert env["versions"]["torch"] == torch.__version__
    fake = {**env, "cpu": {"machine": "x86_64", "torch_cpu_capability": "AVX512", "avx2": True, "avx512_bf16": True,
                           "amx_int8": False, "neon/asimd": False}}
    text = course.describe_environment(fake)
    assert "threads: torch intra-op" in text and "torchao" in text and "onnxruntime" in text
    assert "features: avx2, avx512_bf16\n" in text  # only the flags the CPU has, in NOTABLE_CPU_FLAGS order
    assert course.describe_environment({**fake, "cpu": {"machine": "arm64"}}).count("none of note") == 1


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
