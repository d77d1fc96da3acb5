"""``build/index.html``: one section per notebook with its title, wall time, recorded figures as tables, its saved
plots, and a link to the executed notebook rendered as HTML. Everything comes from files the run wrote."""

from __future__ import annotations

import html
import json
from pathlib import Path

from . import tables
from .paths import atomic_write, build_dir, notebooks_dir

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:3px solid #c33}h2{margin-top:2em;border-bottom:1px solid #ccc}
table.results{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
table.results td,table.results th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
table.results th{background:#f4f4f4}table.results td:first-child{text-align:left}
caption{text-align:left;font-weight:600;padding:.3em 0}.meta{color:#666;font-size:.9em}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
"""


def notebook_title(stem: str) -> str:
    """The first markdown heading of the source notebook, or its file name."""
    path = notebooks_dir() / f"{stem}.ipynb"
    if path.is_file():
        for cell in json.loads(path.read_text()).get("cells", []):
            if cell.get("cell_type") == "markdown":
                for line in "".join(cell.get("source", "")).splitlines():
                    if line.startswith("#"):
                        return line.lstrip("#").strip()
    return stem


def section_tables(name: str, value) -> list[str]:
    """HTML tables for one recorded section: a list of rows, a mapping of rows, or a flat mapping."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [tables.to_html(value, title=name)]
    if isinstance(value, dict) and value:
        if all(isinstance(v, dict) for v in value.values()):
            rows = [{"": k, **{ck: cv for ck, cv in v.items() if not isinstance(cv, (dict, list))}}
                    for k, v in value.items()]
            return [tables.to_html(rows, title=name)]
        flat = [{"figure": k, "value": v} for k, v in value.items() if not isinstance(v, (dict, list))]
        nested = [t for k, v in value.items() if isinstance(v, (dict, list)) for t in section_tables(f"{name} / {k}", v)]
        return ([tables.to_html(flat, title=name)] if flat else []) + nested
    if isinstance(value, (int, float, str, bool)):
        return [tables.to_html([{"figure": name, "value": value}])]
    return []


def write_index() -> Path:
    build = build_dir()
    results_dir = build / "results"
    timings_file = results_dir / "_timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>int8 course: results</title>"
             f"<style>{CSS}</style></head><body><h1>int8 quantization course: measured results</h1>"
             "<p class='meta'>Every figure below was computed by the notebook run that wrote it "
             "(build/results/*.json). Timings are medians on this machine; compare ratios, not seconds.</p>"]
    for path in sorted(results_dir.glob("[0-9]*.json")):
        stem = path.stem
        data = json.loads(path.read_text())
        meta = data.get("meta", {})
        wall = timings.get(stem, {})
        parts.append(f"<h2 id='{html.escape(stem)}'>{html.escape(notebook_title(stem))}</h2>")
        info = [f"wall time: {', '.join(f'{m} {s} s' for m, s in wall.items())}" if wall else "",
                f"torch {meta.get('torch', '?')}, engine {meta.get('engine', '?')}, {meta.get('threads', '?')} threads, "
                f"{'smoke' if meta.get('smoke') else 'full'} mode, started {data.get('started', '?')}"]
        executed = build / "notebooks" / f"{stem}.html"
        if executed.is_file():
            info.append(f"<a href='notebooks/{html.escape(executed.name)}'>executed notebook</a>")
        parts.append("<p class='meta'>" + " · ".join(i for i in info if i) + "</p>")
        for key, value in data.items():
            if key not in ("notebook", "started", "meta"):
                parts.extend(section_tables(key, value))
        for fig in sorted((build / "figures" / stem).glob("*.png")):
            parts.append(f"<img src='figures/{html.escape(stem)}/{html.escape(fig.name)}' alt='{html.escape(fig.stem)}'>")
    parts.append("</body></html>")
    index = build / "index.html"
    with atomic_write(index) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return index
