"""``report/results.html``: one self-contained page (no network, no CDN) beside results.md.

The report JSON is embedded as data and rendered in the browser: sortable tables, latency
and agreement charts as inline SVG, and a view per device and per model when the results
come from several. The PNG charts and the report sections (RKNN, depth, per-layer) are
embedded too, so the file can be mailed or attached to a CI run as it is.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from modelport.common.artifacts import write_atomic

_ASSETS = Path(__file__).with_name("report_assets")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
# Left to right, as Markdown reads them: a code span (shown as it is), or a backslash escape (report_md.md_text
# writes them: the character itself, never markup)
_LITERAL = re.compile(r"`([^`]+)`|\\([!-/:-@\[-`{-~])")
_HELD = "\ue000"  # a private-use character marks a literal while the other spans are found


def script_json(data: object) -> str:
    """``data`` as JSON to embed in a <script> element: no raw ``<``, ``>`` or ``&`` (a merged field holding
    ``</script>`` or ``<!--<script>`` would otherwise end or swallow the element), the same value for JSON.parse."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _inline(text: str, folder: Path) -> str:
    """Markdown text as HTML: everything escaped, then the few spans the report writes: code, bold, images
    (embedded), and backslash escapes shown as the character they escape."""
    held: list[str] = []

    def hold(m: re.Match[str]) -> str:
        code, char = m.groups()
        held.append(f"<code>{html.escape(code)}</code>" if code is not None else html.escape(char))
        return f"{_HELD}{len(held) - 1}{_HELD}"

    out = html.escape(_LITERAL.sub(hold, text.replace(_HELD, "")))
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _IMAGE.sub(lambda m: _img(folder / html.unescape(m.group(2)), html.unescape(m.group(1))), out)
    return re.sub(f"{_HELD}(\\d+){_HELD}", lambda m: held[int(m.group(1))], out)


def _img(path: Path, alt: str) -> str:
    if not path.is_file() or path.suffix.lower() != ".png":
        return html.escape(alt)
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def section_html(markdown: str, folder: Path) -> str:
    """A report section (headings, paragraphs, lists, tables, images) as HTML; anything else as text."""
    parts: list[str] = []
    table: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if table:
            head, *body = [
                [c.strip() for c in row.strip().strip("|").split("|")]
                for row in table
                if not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*", row.strip())
            ]
            parts.append(
                '<table class="sortable"><thead><tr>'
                + "".join(f"<th>{_inline(c, folder)}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c, folder)}</td>" for c in r) + "</tr>" for r in body)
                + "</tbody></table>"
            )
            table.clear()
        if items:
            parts.append("<ul>" + "".join(f"<li>{_inline(i, folder)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("- "):
            items.append(line[2:])
            continue
        flush()
        if m := re.match(r"(#{1,4}) (.*)", line):
            level = min(len(m.group(1)) + 1, 5)
            parts.append(f"<h{level}>{_inline(m.group(2), folder)}</h{level}>")
        elif line.strip():
            parts.append(f"<p>{_inline(line, folder)}</p>")
    flush()
    return "\n".join(parts)


def render(report: dict[str, Any], folder: Path, sections: list[Path], markdown_intro: str) -> str:
    charts = "".join(
        _img(folder / name, alt)
        for name, alt in (("latency.png", "latency"), ("accuracy.png", "agreement"))
        if (folder / name).is_file()
    )
    from .report_md import beyond, detector_boxes, slowest_layers, sustained_section

    extra = "\n".join(
        beyond(report, (folder / "throughput.png").is_file())
        + sustained_section(report, (folder / "sustained.png").is_file())
        + slowest_layers(report, (folder / "layers.png").is_file())
        + detector_boxes(report, (folder / "boxes.png").is_file())
    )
    body = "\n".join(
        f'<section class="md">{section_html(text, folder)}</section>'
        for text in ([extra] if extra else []) + [s.read_text(encoding="utf-8") for s in sections]
    )
    fill = {
        "/*STYLE*/": (_ASSETS / "report.css").read_text(encoding="utf-8"),
        "/*SCRIPT*/": (_ASSETS / "report.js").read_text(encoding="utf-8"),
        "<!--INTRO-->": f"<p>{_inline(markdown_intro, folder)}</p>",
        "<!--PNG-->": charts,
        "<!--SECTIONS-->": body,
        "{/*DATA*/}": script_json(report),
    }
    page = (_ASSETS / "report.html").read_text(encoding="utf-8")
    # One pass: text filled in is never searched for another placeholder (a label may spell one).
    return re.sub("|".join(map(re.escape, fill)), lambda m: fill[m.group(0)], page)


def write(report: dict[str, Any], folder: Path, sections: list[Path], markdown_intro: str) -> Path:
    path = folder / "results.html"
    write_atomic(path, render(report, folder, sections, markdown_intro))
    return path
