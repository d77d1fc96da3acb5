"""environment.yml (conda) must carry exactly the pins of requirements*.txt (pip, the tested path)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^\s*(?:-\s*)?([A-Za-z0-9_.\-]+)==([^\s#]+)")


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = PIN.match(line)
        if m and not line.lstrip().startswith("#"):
            out[m.group(1).lower()] = m.group(2)
    return out


def test_pins_parser():
    assert pins("torch==2.13.0  # c\n# x==1\n  - onnx==1.2 # c") == {"torch": "2.13.0", "onnx": "1.2"}


def test_environment_yml_mirrors_requirements():
    pip_pins = pins((ROOT / "requirements.txt").read_text())
    conda_pins = pins((ROOT / "environment.yml").read_text())
    assert pip_pins, "requirements.txt has no pins"
    assert conda_pins == pip_pins


def test_every_conda_pin_is_commented():
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if PIN.match(line) and not line.lstrip().startswith("#"):
            assert "#" in line, f"pin without a comment saying which notebook needs it: {line.strip()}"


def test_no_deps_carrier_is_documented_for_conda():
    nodeps = pins((ROOT / "requirements-nodeps.txt").read_text())
    env = (ROOT / "environment.yml").read_text()
    for name, version in nodeps.items():
        assert f"pip install --no-deps {name}=={version}" in env


def test_the_installed_torch_is_the_pinned_one():
    import torch

    assert pins((ROOT / "requirements.txt").read_text())["torch"] == torch.__version__.split("+")[0]
