"""helpers.tables: rows as Markdown and HTML."""

import pytest

from helpers import tables


def test_tables():
    rows = [{"model": "fp32", "MB": 90.123456, "ok": True}, {"model": "int8", "MB": 30.5, "ok": False}]
    md = tables.to_markdown(rows, digits=1)
    assert md.splitlines()[0] == "| model | MB | ok |"
    assert "| int8 | 30.5 | no |" in md
    assert "<td>90.1</td>" in tables.to_html(rows, digits=1)
    with pytest.raises(ValueError, match="no rows"):
        tables.to_markdown([])
    tiny = tables.to_markdown([{"mse": 3.054e-6, "zero": 0.0, "small": 0.0123}], digits=3)
    assert tiny.splitlines()[-1] == "| 3.05e-06 | 0.000 | 0.012 |"
