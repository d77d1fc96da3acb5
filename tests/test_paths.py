"""helpers.paths: the course notebooks, file checksums and atomic writes."""

import pytest

from helpers.paths import atomic_write


def test_course_notebooks(tmp_path):
    from helpers.paths import course_notebooks

    for name in ("02_b.ipynb", "01_a.ipynb", "scratch.ipynb", "1_x.ipynb", "03_c.txt"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in course_notebooks(source_dir=tmp_path)] == ["01_a.ipynb", "02_b.ipynb"]
    assert [p.name for p in course_notebooks(["02"], source_dir=tmp_path)] == ["02_b.ipynb"]
    assert [p.name for p in course_notebooks()][:1] == ["01_int8_scaling.ipynb"]


def test_sha256_file(tmp_path):
    import hashlib

    from helpers.paths import sha256_file

    blob = bytes(range(256)) * 5000  # > 1 MiB: more than one chunk
    (tmp_path / "f.bin").write_bytes(blob)
    assert sha256_file(tmp_path / "f.bin") == hashlib.sha256(blob).hexdigest()


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []
