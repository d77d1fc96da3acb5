"""The layout shows the design: helpers/ holds what notebooks import, tools/ what only ``make`` and CI run.

- no notebook code cell and no helpers module imports ``tools``;
- every ``python -m`` target of the Makefile and CI that belongs to the project is in tools/, and the modules that
  used to be build tooling inside helpers/ (run, report, student) are gone from it;
- no helpers module is used only by tools/ (it would be build tooling in the wrong folder);
- ``helpers/__init__.py``'s index lists every module of helpers/, and nothing else;
- tests/ mirrors helpers/: a test file per module, policy and tooling tests in their own folders.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELPERS, TOOLS = ROOT / "helpers", ROOT / "tools"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Modules that were build tooling in helpers/ and now live in tools/.
MOVED_TO_TOOLS = ("run", "report", "student")


def notebook_code(path: Path) -> list[str]:
    """Each code cell as plain Python (IPython magics turned into calls, as the kernel would)."""
    from IPython.core.inputtransformer2 import TransformerManager

    cells = json.loads(path.read_text())["cells"]
    return [TransformerManager().transform_cell("".join(c["source"])) for c in cells if c["cell_type"] == "code"]


def imported_modules(tree: ast.AST, package: str | None = None) -> set[str]:
    """Dotted names of every module an AST imports (``from x import y`` gives ``x`` and ``x.y``); relative imports
    are resolved against ``package``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = (package or "").split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}
    return out


def module_name(path: Path) -> tuple[str, str]:
    """(module, package) of a .py file below the repository root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def modules_imported_by(folder: Path) -> dict[str, set[str]]:
    out = {}
    for path in sorted(folder.rglob("*.py")):
        name, package = module_name(path)
        out[name] = imported_modules(ast.parse(path.read_text(), str(path)), package)
    return out


def top_helpers_module(dotted: str) -> str | None:
    """``helpers.bench.runner`` -> ``bench``; ``helpers`` alone and non-helpers names -> None."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "helpers" and len(parts) > 1 else None


def helpers_modules() -> set[str]:
    return {p.stem for p in HELPERS.glob("*.py") if p.stem != "__init__"} | \
           {p.parent.name for p in HELPERS.glob("*/__init__.py")}


def test_the_import_scanner_sees_what_it_must():
    tree = ast.parse("import tools.run\nfrom tools import bench\nfrom . import routes\nfrom ..paths import x\n")
    found = imported_modules(tree, package="helpers.bench")
    assert {"tools.run", "tools", "tools.bench", "helpers.bench.routes", "helpers.paths.x"} <= found
    assert module_name(HELPERS / "bench" / "__init__.py") == ("helpers.bench", "helpers.bench")
    assert top_helpers_module("helpers.bench.runner") == "bench" and top_helpers_module("tools.run") is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_imports_tools(path):
    for i, code in enumerate(notebook_code(path)):
        used = {m for m in imported_modules(ast.parse(code)) if m.split(".")[0] == "tools"}
        assert not used, f"{path.name}, code cell {i} imports {sorted(used)}: notebooks import helpers, never tools"


def test_no_helpers_module_imports_tools():
    for name, imports in modules_imported_by(HELPERS).items():
        used = {m for m in imports if m.split(".")[0] == "tools"}
        assert not used, f"{name} imports {sorted(used)}: helpers must not depend on the build tooling"


def test_build_tooling_lives_in_tools():
    assert TOOLS.is_dir() and (TOOLS / "__init__.py").is_file()
    for name in MOVED_TO_TOOLS:
        assert not (HELPERS / f"{name}.py").exists() and not (HELPERS / name).exists(), f"helpers/{name} is tooling"
        assert (TOOLS / f"{name}.py").is_file()
    commands = (ROOT / "Makefile").read_text() + (ROOT / ".ci" / "run").read_text()
    targets = set(re.findall(r"python -m ([\w.]+)", commands))
    project = {t for t in targets if t.split(".")[0] in ("helpers", "tools")}
    assert project >= {"tools.run", "tools.bench", "tools.student"}
    assert all(t.startswith("tools.") for t in project), f"make runs helpers modules: {sorted(project)}"


def test_no_helpers_module_is_used_only_by_tools():
    """A helpers module that some tool imports must also serve a notebook or another helper."""
    notebook_users = {top_helpers_module(m) for nb in NOTEBOOKS for code in notebook_code(nb)
                      for m in imported_modules(ast.parse(code))}
    helper_users = {top_helpers_module(m) for name, imports in modules_imported_by(HELPERS).items()
                    for m in imports if top_helpers_module(m) != top_helpers_module(name)}
    tool_users = {top_helpers_module(m) for imports in modules_imported_by(TOOLS).values() for m in imports}
    only_tools = (tool_users - notebook_users - helper_users - {None}) & helpers_modules()
    assert not only_tools, f"helpers modules used only by tools/ (move them there): {sorted(only_tools)}"


def test_the_package_index_lists_every_module():
    """``helpers/__init__.py``'s docstring is the map a learner reads first: one line per module or subpackage."""
    import helpers

    listed = set(re.findall(r"^- ``(\w+)``", helpers.__doc__, flags=re.M))
    listed |= set(re.findall(r"^- ``\w+``, ``(\w+)``", helpers.__doc__, flags=re.M))
    present = {p.stem for p in HELPERS.glob("*.py") if p.stem != "__init__"}
    present |= {p.name for p in HELPERS.iterdir() if (p / "__init__.py").is_file()}
    assert listed == present, (f"in the index only: {sorted(listed - present)}; "
                               f"in helpers/ only: {sorted(present - listed)}")


def test_the_bench_is_fenced():
    """What only notebook 06 and ``make bench`` use lives in helpers/bench/; no other helper imports it."""
    outside = {name: sorted(m for m in imports if top_helpers_module(m) == "bench")
               for name, imports in modules_imported_by(HELPERS).items() if top_helpers_module(name) != "bench"}
    assert not {name: found for name, found in outside.items() if found}
    users = {nb.name[:2] for nb in NOTEBOOKS for code in notebook_code(nb)
             if any(top_helpers_module(m) == "bench" for m in imported_modules(ast.parse(code)))}
    assert users <= {"06"}, f"notebooks other than 06 import helpers.bench: {sorted(users - {'06'})}"


def test_every_name_a_module_exports_exists():
    """``__all__`` lists only names the module has (ruff does not check ``__init__.py`` files for it)."""
    import importlib

    missing = {}
    for path in sorted(HELPERS.rglob("*.py")):
        name, _ = module_name(path)
        if "__all__" not in path.read_text():
            continue
        module = importlib.import_module(name)
        absent = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
        if absent:
            missing[name] = absent
    assert not missing, f"names in __all__ that the module does not define: {missing}"


def test_the_tests_mirror_the_helpers():
    """Each top-level helpers module has its test file, ``helpers/x.py`` -> ``tests/test_x.py``; a subpackage
    ``helpers/p/`` has a folder ``tests/p/`` or one file ``tests/test_p.py`` (mirrored per package, not per module
    inside it). Notebook policy and tooling tests have their own folders."""
    tests = ROOT / "tests"
    missing = [p.stem for p in HELPERS.glob("*.py")
               if p.stem != "__init__" and not (tests / f"test_{p.stem}.py").is_file()]
    missing += [p.name for p in HELPERS.iterdir() if (p / "__init__.py").is_file()
                and not (tests / p.name).is_dir() and not (tests / f"test_{p.name}.py").is_file()]
    assert not missing, f"helpers modules without a test file: {sorted(missing)}"
    stray = sorted(p.name for p in tests.glob("test_*.py")
                   if not (HELPERS / f"{p.stem[5:]}.py").is_file() and not (HELPERS / p.stem[5:]).is_dir())
    assert not stray, f"tests/ files named after no helpers module (move them to tests/policy or tooling): {stray}"
