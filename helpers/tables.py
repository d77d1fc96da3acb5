"""Showing measured rows as tables: HTML in a notebook, markdown in a terminal or a report.

Rows are dicts with the same keys; floats are rounded for display only (the JSON record keeps full precision).
"""

from __future__ import annotations

import html
from typing import Iterable, Sequence


def format_value(value, digits: int = 3) -> str:
    """One table cell as text: floats rounded to ``digits`` (small ones keep significant digits), booleans as
    yes/no, None and NaN as a dash."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # nan
            return "–"
        if value != 0 and abs(value) < 0.5 * 10 ** -digits:  # would print as 0.000: keep significant digits
            return f"{value:.{max(digits, 2)}g}"
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
    if value is None:
        return "–"
    return str(value)


def _columns(rows: Sequence[dict], columns: Sequence[str] | None) -> list[str]:
    if columns:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def to_markdown(rows: Iterable[dict], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to show")
    cols = _columns(rows, columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(format_value(r.get(c), digits) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def to_html(rows: Iterable[dict], columns: Sequence[str] | None = None, digits: int = 3,
            title: str | None = None) -> str:
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to show")
    cols = _columns(rows, columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(format_value(r.get(c), digits))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    caption = f"<caption>{html.escape(title)}</caption>" if title else ""
    return f'<table class="results">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def show(rows: Iterable[dict], columns: Sequence[str] | None = None, digits: int = 3, title: str | None = None):
    """Display rows as an HTML table in Jupyter (markdown text elsewhere); returns the markdown."""
    rows = list(rows)
    md = to_markdown(rows, columns, digits)
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display

        if get_ipython() is not None:
            display(HTML(to_html(rows, columns, digits, title)))
            return None
    except ImportError:
        pass
    print((title + "\n" if title else "") + md)
    return None
