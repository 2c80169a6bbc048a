"""One self-contained HTML page for a run or suite folder: tables as <table>, PNGs inlined as base64.

The page needs no network and no script: CSS is inline, every image is a ``data:`` URI.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from .markdown import format_value, metrics_rows
from .schema import atomic_write_text, read_json_file, union_columns

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#fafafa;color:#222}
main{max-width:1100px;margin:0 auto;padding:1.5rem}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1.1rem}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.9rem;background:#fff}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f5}tbody tr:nth-child(even){background:#f6f7f9}
pre{background:#f0f0f0;padding:.6rem;overflow-x:auto;font-size:.85rem}
code{font-family:ui-monospace,Menlo,Consolas,monospace}
figure{margin:1rem 0;display:inline-block;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #ddd;background:#fff}
figcaption{font-size:.85rem;color:#555}
"""


def _esc(v: Any) -> str:
    return html.escape(format_value(v) if not isinstance(v, str) else v)


def html_table(rows: Sequence[Any], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A <table> from dict rows (looked up by column) or sequence rows (in order)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in (headers or columns))
    body = []
    for row in rows:
        values = [row.get(c) for c in columns] if isinstance(row, dict) else list(row)
        body.append("<tr>" + "".join(f"<td>{_esc(_flat(v))}</td>" for v in values) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>\n"


def _flat(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>\n")


# --------------------------------------------------------------------------- markdown subset -> HTML
_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)"), r'<a href="\2">\1</a>'),
]
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
_SEP = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


def _cells(line: str) -> list[str]:
    line = line.strip().strip("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def markdown_to_html(text: str, folder: Path, used: set[Path]) -> str:
    """Convert the Markdown this package writes (headings, tables, lists, code, images) to HTML.

    Local images are inlined and added to ``used``; images outside ``folder`` or missing become text.
    """
    lines, out, i, para = text.splitlines(), [], 0, []

    def flush() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
            continue
        if stripped.startswith("|") and i + 1 < len(lines) and _SEP.match(lines[i + 1].strip()):
            flush()
            header, rows, j = _cells(stripped), [], i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                rows.append(_cells(lines[j]))
                j += 1
            head = "".join(f"<th>{_inline(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            i = j
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        image = _IMAGE.match(stripped)
        if heading:
            flush()
            level = min(6, len(heading.group(1)) + 1)  # the page title is the only <h1>
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif image:
            flush()
            target = (folder / image.group(2)).resolve()
            inside = folder.resolve() in target.parents and target.suffix.lower() == ".png" and target.is_file()
            if inside:
                used.add(target)
                out.append(_figure(target, image.group(1) or target.name))
            else:
                out.append(f"<p>[image: {html.escape(image.group(1) or image.group(2))}]</p>")
        elif re.match(r"^([-*]|\d+\.)\s+", stripped):
            flush()
            ordered = bool(re.match(r"^\d+\.", stripped))
            items = []
            while i < len(lines) and re.match(r"^([-*]|\d+\.)\s+", lines[i].strip()):
                items.append("<li>" + _inline(re.sub(r"^([-*]|\d+\.)\s+", "", lines[i].strip())) + "</li>")
                i += 1
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>{''.join(items)}</{tag}>")
            continue
        elif not stripped:
            flush()
        else:
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- report.json / results.json
def _report_html(report: dict[str, Any]) -> str:
    parts = []
    if report.get("command"):
        parts.append(f"<pre><code>{html.escape(str(report['command']))}</code></pre>")
    for key in ("model", "data", "method"):
        block = report.get(key)
        if isinstance(block, dict) and block:
            parts.append(f"<h3>{key}</h3>" + html_table([[k, v] for k, v in block.items()], ["key", "value"]))
    metrics = report.get("metrics") or {}
    if isinstance(metrics.get("before"), dict):
        rows = metrics_rows(metrics["before"], metrics.get("after"), report)
        parts.append("<h3>metrics</h3>" + html_table(rows, ["metric", "before", "after", "change"]))
    timings = report.get("timings") or {}
    if timings:
        parts.append("<h3>timings</h3>" + html_table([[k, f"{float(v):.2f}"] for k, v in timings.items()],
                                                     ["phase", "seconds"]))
    env = {**(report.get("versions") or {}), **(report.get("machine") or {})}
    if env:
        parts.append("<h3>environment</h3>" + html_table([[k, v] for k, v in env.items()], ["item", "value"]))
    history = report.get("history") or []
    if history:
        parts.append("<h3>training</h3>" + html_table(history, union_columns(history, ["epoch"])))
    return "\n".join(parts)


def _results_html(results: Any) -> str:
    rows = results.get("results") if isinstance(results, dict) else results
    parts = []
    if isinstance(results, dict):
        meta = {k: v for k, v in results.items() if k != "results"}
        if meta:
            parts.append(html_table([[k, v] for k, v in meta.items()], ["key", "value"]))
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        parts.append(html_table(rows, union_columns(rows, ["name", "method"])))
    return "\n".join(parts)


def _load_json(path: Path) -> Any:
    """A report.json / results.json; unreadable or not JSON raises ReportFileError naming it (no empty page)."""
    return read_json_file(path)


def _folder_html(folder: Path, depth: int, skip: set[Path]) -> str:
    """Sections for one folder's report.json, results.json, Markdown files, plots, then its subfolders."""
    parts, used = [], set(skip)
    report_path, results_path = folder / "report.json", folder / "results.json"
    if report_path.is_file():
        report = _load_json(report_path)
        parts.append(_report_html(report) if isinstance(report, dict) else "")
    if results_path.is_file():
        parts.append("<h3>results</h3>" + _results_html(_load_json(results_path)))
    for md in sorted(folder.glob("*.md")):
        if md.name == "report.md" and report_path.is_file():
            continue  # the same content, rendered from report.json above
        parts.append(f'<h3 id="{html.escape(md.stem)}">{html.escape(md.name)}</h3>')
        parts.append(markdown_to_html(md.read_text(encoding="utf-8"), folder, used))
    plots = [p for p in sorted(folder.glob("*.png")) if p.resolve() not in used]
    if plots:
        parts.append("<h3>plots</h3>" + "".join(_figure(p, p.name) for p in plots))
    if depth > 0:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            inner = _folder_html(sub, depth - 1, used)
            if inner.strip():
                parts.append(f'<section id="{html.escape(sub.name)}"><h2>{html.escape(sub.name)}</h2>\n{inner}'
                             "</section>")
    return "\n".join(p for p in parts if p)


def render_html(folder: str | os.PathLike, out: str | os.PathLike | None = None, title: str | None = None,
                depth: int = 2) -> Path:
    """Write ``folder/report.html`` (or ``out``): one page with everything the folder (and subfolders) holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(folder)
    if title is None:
        report = _load_json(folder / "report.json") if (folder / "report.json").is_file() else {}
        name = (report.get("model") or {}).get("name") if isinstance(report, dict) else None
        title = f"prunekit: {name}" if name else f"prunekit: {folder.resolve().name}"
    body = _folder_html(folder, depth, set())
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n")
    return atomic_write_text(Path(out) if out else folder / "report.html", page)


def image_sources(page: str) -> Iterable[str]:
    """The ``src`` of every <img> in a page (tests use it to check nothing points outside the page)."""
    return re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
