"""``build/index.html``: the course's measured results, in a page an instructor can project.

One section per notebook: its title, its wall time, the figures it recorded (``build/results/<notebook>.json``)
as tables, the plots it saved (``build/figures/<notebook>/*.png``) and a link to the executed notebook rendered as
HTML. A table of contents and a timing table (smoke and full wall time per notebook, from
``build/results/_timings.json``) come first. The timing table is also written as markdown to
``build/timings.md``, the fragment the README's instructor section points to.

Everything comes from files the run wrote; nothing is typed in.

    python -m tools.report     # rebuild build/index.html and build/timings.md from what is in build/
"""

from __future__ import annotations

import html
import json
import re
import sys
import time
from pathlib import Path

from helpers import tables
from helpers.paths import atomic_write, build_dir, course_notebooks, notebooks_dir

MODES = ("smoke", "full")

CSS = """
:root{--accent:#b3261e;--ink:#1d1d1f;--muted:#5f6368;--line:#dadce0;--soft:#f6f7f9}
*{box-sizing:border-box}
body{font:17px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans KR",sans-serif;color:var(--ink);margin:0}
header{background:var(--ink);color:#fff;padding:1.4em 2em}
header h1{margin:0;font-size:1.9em;font-weight:650}
header p{margin:.3em 0 0;color:#c8cacd}
.layout{display:grid;grid-template-columns:16em minmax(0,1fr);gap:2.5em;max-width:1400px;margin:0 auto;
  padding:1.5em 2em}
nav.toc{position:sticky;top:1em;align-self:start;font-size:.92em}
nav.toc ol{padding-left:1.2em;margin:.4em 0}nav.toc li{margin:.25em 0}
nav.toc a{color:var(--ink);text-decoration:none}nav.toc a:hover{color:var(--accent)}
nav.toc h2{font-size:1em;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);border:0;margin:0}
main h2{font-size:1.55em;margin:2em 0 .3em;padding-bottom:.2em;border-bottom:3px solid var(--accent)}
main h2:first-child{margin-top:0}
h3{font-size:1.1em;margin:1.4em 0 .3em;color:var(--muted)}
.meta{color:var(--muted);font-size:.88em;margin:.2em 0 .8em}
.badge{display:inline-block;padding:.05em .55em;border-radius:1em;font-size:.85em;font-weight:600;
  background:var(--soft);border:1px solid var(--line);margin-right:.4em}
.badge.time{background:#e8f0fe;border-color:#c6dafc}
.badge.fail{background:#fce8e6;border-color:#f4c7c3;color:var(--accent)}
a.button{display:inline-block;padding:.3em .9em;border-radius:.4em;background:var(--accent);color:#fff;
  text-decoration:none;font-weight:600;font-size:.9em;margin:.2em .4em .2em 0}
a.button.secondary{background:var(--soft);color:var(--ink);border:1px solid var(--line)}
table.results{border-collapse:collapse;margin:.4em 0 1.2em;font-size:.9em;font-variant-numeric:tabular-nums;
  display:block;overflow-x:auto;max-width:100%}
table.results td,table.results th{border-bottom:1px solid var(--line);padding:.35em .8em;text-align:right;
  white-space:nowrap}
table.results th{background:var(--soft);font-weight:600;border-bottom:2px solid var(--line)}
table.results td:first-child,table.results th:first-child{text-align:left}
table.results tbody tr:hover{background:#fafafa}
caption{text-align:left;font-weight:600;padding:.3em 0;caption-side:top;white-space:nowrap}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1em;margin:.6em 0 1em}
figure{margin:0;border:1px solid var(--line);border-radius:.4em;padding:.5em;background:#fff}
figure img{width:100%;height:auto;display:block}figcaption{color:var(--muted);font-size:.85em;padding-top:.3em}
.empty{color:var(--muted);font-style:italic}
@media (max-width:900px){.layout{grid-template-columns:1fr}nav.toc{position:static}}
@media print{nav.toc{display:none}.layout{display:block}header{background:none;color:var(--ink)}}
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


def humanize(key: str) -> str:
    """``fp32_vs_int8`` -> ``fp32 vs int8`` for headings."""
    return re.sub(r"[_]+", " ", key).strip()


def section_tables(name: str, value) -> list[str]:
    """HTML tables for one recorded section: a list of rows, a mapping of rows, or a flat mapping."""
    title = humanize(name)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        rows = [{k: v for k, v in row.items() if not isinstance(v, (dict, list))} for row in value]
        return [tables.to_html(rows, title=title)] if any(rows) else []
    if isinstance(value, list) and value and all(isinstance(v, (int, float, str, bool)) for v in value):
        return [tables.to_html([{"figure": title, "value": ", ".join(tables.format_value(v, 3) for v in value)}])]
    if isinstance(value, dict) and value:
        if all(isinstance(v, dict) for v in value.values()):
            rows = [{"": k, **{ck: cv for ck, cv in v.items() if not isinstance(cv, (dict, list))}}
                    for k, v in value.items()]
            return [tables.to_html(rows, title=title)]
        flat = [{"figure": humanize(k), "value": v} for k, v in value.items() if not isinstance(v, (dict, list))]
        nested = [t for k, v in value.items() if isinstance(v, (dict, list))
                  for t in section_tables(f"{name} / {k}", v)]
        return ([tables.to_html(flat, title=title)] if flat else []) + nested
    if isinstance(value, (int, float, str, bool)):
        return [tables.to_html([{"figure": title, "value": value}])]
    return []


def load_timings() -> dict:
    path = build_dir() / "results" / "_timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def known_notebooks() -> list[str]:
    """Every course notebook (source files) plus any with results, in order."""
    stems = {p.stem for p in course_notebooks()}
    stems |= {p.stem for p in (build_dir() / "results").glob("[0-9]*.json")}
    return sorted(stems)


def _minutes(seconds) -> str:
    return f"{seconds / 60:.1f}" if isinstance(seconds, (int, float)) else "–"


def timing_rows(timings: dict, stems: list[str]) -> list[dict]:
    """One row per notebook: wall time in minutes in smoke and full mode ("–" where not run), plus a total."""
    rows = []
    for stem in stems:
        t = timings.get(stem, {})
        row = {"notebook": stem}
        for mode in MODES:
            row[f"{mode} (min)"] = "failed" if t.get(f"{mode}_failed") else _minutes(t.get(mode))
        rows.append(row)
    totals = {m: [timings.get(s, {}).get(m) for s in stems] for m in MODES}
    def total(values):
        return _minutes(sum(values)) if values and all(isinstance(x, (int, float)) for x in values) else "–"

    rows.append({"notebook": "total", **{f"{m} (min)": total(v) for m, v in totals.items()}})
    return rows


def timings_markdown(timings: dict | None = None, stems: list[str] | None = None) -> str:
    timings = load_timings() if timings is None else timings
    stems = known_notebooks() if stems is None else stems
    return (f"Wall time per notebook, measured by `make run` (smoke) and `make run FULL=1` (full) on this machine, "
            f"{time.strftime('%Y-%m-%d')}. Regenerated by every run; do not edit by hand.\n\n"
            + tables.to_markdown(timing_rows(timings, stems)) + "\n")


def _figure_html(stem: str, fig: Path) -> str:
    src = f"figures/{html.escape(stem)}/{html.escape(fig.name)}"
    return (f"<figure><a href='{src}'><img src='{src}' alt='{html.escape(humanize(fig.stem))}' loading='lazy'></a>"
            f"<figcaption>{html.escape(humanize(fig.stem))}</figcaption></figure>")


def notebook_section(stem: str, timings: dict) -> str:
    build = build_dir()
    path = build / "results" / f"{stem}.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    meta = data.get("meta", {})
    wall = timings.get(stem, {})
    parts = [f"<section id='{html.escape(stem)}'><h2>{html.escape(notebook_title(stem))}</h2>"]
    badges = [f"<span class='badge time'>{mode}: {wall[mode]:.0f} s</span>" for mode in MODES
              if isinstance(wall.get(mode), (int, float))]
    badges += [f"<span class='badge fail' title='{html.escape(str(wall[f'{mode}_failed']))}'>{mode}: failed</span>"
               for mode in MODES if wall.get(f"{mode}_failed")]
    links = []
    if (build / "notebooks" / f"{stem}.html").is_file():
        links.append(f"<a class='button' href='notebooks/{html.escape(stem)}.html'>executed notebook</a>")
    if (build / "notebooks" / f"{stem}.ipynb").is_file():
        links.append(f"<a class='button secondary' href='notebooks/{html.escape(stem)}.ipynb'>.ipynb</a>")
    parts.append("<p>" + "".join(badges) + "".join(links) + "</p>")
    if not data:
        parts.append("<p class='empty'>No results yet: run <code>make run</code>.</p></section>")
        return "\n".join(parts)
    def shown(mapping, key):
        return html.escape(str(mapping.get(key, "?")))

    parts.append(f"<p class='meta'>{'smoke' if meta.get('smoke') else 'full'} mode · torch {shown(meta, 'torch')}"
                 f" · engine {shown(meta, 'engine')} · {shown(meta, 'threads')} threads"
                 f" · run started {shown(data, 'started')}</p>")
    figures = sorted((build / "figures" / stem).glob("*.png"))
    if figures:
        parts.append("<div class='figures'>" + "".join(_figure_html(stem, f) for f in figures) + "</div>")
    for key, value in data.items():
        if key not in ("notebook", "started", "meta"):
            parts.extend(section_tables(key, value))
    parts.append("</section>")
    return "\n".join(parts)


def write_index() -> Path:
    build = build_dir()
    timings = load_timings()
    stems = known_notebooks()
    toc = "".join(f"<li><a href='#{html.escape(s)}'>{html.escape(notebook_title(s))}</a></li>" for s in stems)
    extras = []
    if (build / "student" / "int8-course-student.zip").is_file():
        extras.append("<li><a href='student/int8-course-student.zip'>student notebooks (zip)</a></li>")
    if (build / "browser" / "notebook01.png").is_file():
        extras.append("<li><a href='browser/notebook01.png'>notebook 01 in JupyterLab (screenshot)</a></li>")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>int8 quantization course: measured results</title><style>{CSS}</style></head><body>",
        "<header><h1>int8 quantization of PyTorch models for CPU inference</h1>"
        f"<p>Measured results of the course notebooks · report written {time.strftime('%Y-%m-%d %H:%M')}</p></header>",
        "<div class='layout'><nav class='toc'><h2>Contents</h2><ol>"
        f"<li><a href='#timings'>Wall time per notebook</a></li>{toc}</ol>"
        + (f"<ul>{''.join(extras)}</ul>" if extras else "") + "</nav><main>",
        "<section id='timings'><h2>Wall time per notebook</h2>"
        "<p class='meta'>Every figure on this page was computed by the notebook run that wrote it "
        "(build/results/*.json). Timings are medians on this machine with the thread count shown: compare ratios, "
        "not seconds across machines.</p>",
        tables.to_html(timing_rows(timings, stems)), "</section>",
    ]
    parts += [notebook_section(stem, timings) for stem in stems]
    parts.append("</main></div></body></html>")
    index = build / "index.html"
    with atomic_write(index) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    with atomic_write(build / "timings.md") as tmp:
        tmp.write_text(timings_markdown(timings, stems), encoding="utf-8")
    return index


if __name__ == "__main__":
    print(write_index())
    sys.exit(0)
