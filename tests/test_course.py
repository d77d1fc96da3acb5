"""helpers.course: the environment a notebook prints at its start."""

import torch

from helpers import course, cpu


def test_environment_description_names_versions_threads_and_the_notable_flags():
    env = course.environment()
    assert set(env) == {"versions", "cpu", "threads", "quantized_engine", "platform"}
    assert list(env["versions"])[:2] == ["python", "torch"] and set(course.VERSIONED) <= set(env["versions"])
    assert env["versions"]["torch"] == torch.__version__
    fake = {**env, "cpu": {"machine": "x86_64", "os": "linux", "torch_cpu_capability": "AVX512", "avx2": True,
                           "avx512_bf16": True, "amx_int8": False, "asimd": False}}
    text = course.describe_environment(fake)
    assert "threads: torch intra-op" in text and "torchao" in text and "onnxruntime" in text
    assert "\n" + cpu.describe(fake["cpu"]) + "\n" in text  # helpers.cpu's line
    assert "features: avx2, avx512_bf16\n" in text  # only the flags the CPU has, in cpu.NOTABLE_FLAGS order
    assert course.describe_environment({**fake, "cpu": {"machine": "arm64"}}).count("none of note") == 1
