"""A page-evaluation report people can read: one self-contained HTML file and a PNG chart.

:func:`write_html_report` turns the dict of :func:`htr_tf.evaluate_pipeline.evaluate_pipeline`
into ``OUT.html`` (every image inline as base64 PNG, no scripts, no network) and writes the
CER chart beside it as ``OUT.cer.png``.  The page holds:

* a summary table: line-level vs page-level CER/WER per decoder (pooled rates);
* the CER bar chart (drawn with OpenCV: matplotlib is not a dependency);
* line detection precision/recall and seconds per page by stage;
* sclite's WER next to jiwer's, when sclite ran;
* the most frequent character confusions per decoder;
* the worst lines: their image crop and a coloured reference/hypothesis diff
  (substitutions amber, deletions red, insertions green);
* one row per page, with its page-level text diff (folded).

All text goes through :func:`html.escape`; files are written atomically.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["cer_chart_png", "diff_html", "render_html", "write_html_report", "chart_path_for"]

#: BGR colours of the chart's two series (line level, page level).
_LINE_COLOUR = (180, 119, 31)
_PAGE_COLOUR = (14, 127, 255)


# -- the chart ---------------------------------------------------------------------------------------
def _nice_step(top: float) -> float:
    """A round tick step giving about five ticks up to ``top``."""
    raw = max(top, 1e-9) / 5
    mag = 10 ** np.floor(np.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def cer_chart_png(report: dict[str, Any]) -> bytes:
    """A PNG bar chart of CER (%) per decoder: line level and page level side by side."""
    import cv2

    rows = report.get("summary", [])
    series = [("line level (GT boxes)", "line", _LINE_COLOUR), ("page level (full pipeline)", "page", _PAGE_COLOUR)]
    values = [[(100 * e[k]["cer"]) if e.get(k) and e[k].get("cer") is not None else None for _, k, _ in series]
              for e in rows]
    font = cv2.FONT_HERSHEY_SIMPLEX
    group_w, bar_w, left, right, top, bottom = 170, 56, 70, 30, 70, 70
    W = max(left + right + group_w * max(len(rows), 1), 520)
    H = 380
    img = np.full((H, W, 3), 255, np.uint8)
    vmax = max([v for vs in values for v in vs if v is not None] + [1.0])
    step = _nice_step(vmax * 1.1)
    ymax = step * np.ceil(vmax * 1.1 / step)
    plot_h = H - top - bottom

    def y_of(v: float) -> int:
        return int(round(top + plot_h * (1 - v / ymax)))

    cv2.putText(img, "CER by decoder (%)", (left, 28), font, 0.7, (20, 20, 20), 2, cv2.LINE_AA)
    tick = 0.0
    while tick <= ymax + 1e-9:
        y = y_of(tick)
        cv2.line(img, (left, y), (W - right, y), (225, 225, 225), 1)
        cv2.putText(img, f"{tick:g}", (8, y + 5), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
        tick += step
    cv2.line(img, (left, top), (left, H - bottom), (60, 60, 60), 1)
    cv2.line(img, (left, H - bottom), (W - right, H - bottom), (60, 60, 60), 1)
    for g, (entry, vs) in enumerate(zip(rows, values)):
        x0 = left + g * group_w + (group_w - 2 * bar_w - 8) // 2
        for s, v in enumerate(vs):
            bx = x0 + s * (bar_w + 8)
            if v is None:
                cv2.putText(img, "n/a", (bx + 10, H - bottom - 6), font, 0.45, (120, 120, 120), 1, cv2.LINE_AA)
                continue
            cv2.rectangle(img, (bx, y_of(v)), (bx + bar_w, H - bottom), series[s][2], -1)
            cv2.putText(img, f"{v:.1f}", (bx + 4, y_of(v) - 6), font, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
        name = _ascii(str(entry.get("decoder", "?")))[:20]
        (tw, _), _ = cv2.getTextSize(name, font, 0.5, 1)
        cv2.putText(img, name, (left + g * group_w + max((group_w - tw) // 2, 0), H - bottom + 24), font, 0.5,
                    (20, 20, 20), 1, cv2.LINE_AA)
    lx = left
    for label, _, colour in series:
        cv2.rectangle(img, (lx, H - 28), (lx + 14, H - 14), colour, -1)
        cv2.putText(img, label, (lx + 20, H - 16), font, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
        (tw, _), _ = cv2.getTextSize(label, font, 0.45, 1)
        lx += tw + 50
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("OpenCV could not encode the chart")
    return buf.tobytes()


# -- html pieces -------------------------------------------------------------------------------------
def _visible(c: str) -> str:
    return "\u2423" if c == " " else c


def diff_html(ref: str, hyp: str) -> tuple[str, str]:
    """(reference, hypothesis) as escaped HTML with edits wrapped in ``<span class="sub|del|ins">``."""
    from htr_tf.evaluate_pipeline import char_ops

    r_out, h_out = [], []
    for kind, r, h in char_ops(ref, hyp):
        if kind == "=":
            r_out.append(html.escape(r))
            h_out.append(html.escape(h))
        elif kind == "s":
            r_out.append(f'<span class="sub">{html.escape(_visible(r))}</span>')
            h_out.append(f'<span class="sub">{html.escape(_visible(h))}</span>')
        elif kind == "d":
            r_out.append(f'<span class="del">{html.escape(_visible(r))}</span>')
        else:
            h_out.append(f'<span class="ins">{html.escape(_visible(h))}</span>')
    return "".join(r_out), "".join(h_out)


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * float(v):.2f}"


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{float(v):.{digits}f}" if isinstance(v, float) else str(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], id: str, raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (already-escaped HTML)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else html.escape(str(c))}</td>" for c in r) + "</tr>\n"
                   for r in rows)
    return f'<table id="{id}"><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>'


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top} th{background:#f3f3f3} td.num{text-align:right}
.sub{background:#ffd27a} .del{background:#ff9c9c;text-decoration:line-through} .ins{background:#9be39b}
.text{font-family:ui-monospace,monospace;white-space:pre-wrap} .note{color:#555;font-size:.9em}
img.crop{max-width:700px;border:1px solid #ddd}
"""


def _summary_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for e in report["summary"]:
        line, page = e.get("line") or {}, e.get("page") or {}
        rows.append([e["decoder"], _pct(line.get("cer")), _pct(line.get("wer")), _pct(page.get("cer")),
                     _pct(page.get("wer")), _pct(e.get("mean_page_cer")),
                     _num(e.get("decode_seconds_per_page"))])
    return rows


def _confusion_section(report: dict[str, Any]) -> str:
    parts = []
    for name, pairs in report.get("confusions", {}).items():
        rows = [[html.escape(_visible(p["ref"])) if p["ref"] else "<i>(none)</i>",
                 html.escape(_visible(p["hyp"])) if p["hyp"] else "<i>(none)</i>", str(p["count"])]
                for p in pairs]
        safe = "".join(c if c.isalnum() else "-" for c in name)
        parts.append(f"<h3>{html.escape(name)}</h3>"
                     + _table(["reference", "recognised as", "count"], rows, f"confusions-{safe}", raw=True))
    if not parts:
        return '<p class="note">No line-level alignment (no ground-truth line boxes).</p>'
    return ('<p class="note">Character edits at line level; (none) on the reference side is an insertion, '
            'on the recognised side a deletion; \u2423 is a space.</p>' + "".join(parts))


def _worst_section(report: dict[str, Any]) -> str:
    names = [e["decoder"] for e in report["summary"]]
    rows = []
    for w in report.get("worst_lines", []):
        img = (f'<img class="crop" alt="line {html.escape(str(w["id"]))}" '
               f'src="data:image/png;base64,{w["image_png"]}">' if w.get("image_png") else "")
        diffs = []
        for n in names:
            ref_h, hyp_h = diff_html(w["ref"], w["hyp"][n])
            cer = w.get("cer", {}).get(n)
            diffs.append(f'<div><b>{html.escape(n)}</b> (CER {_pct(cer)}%)<br>'
                         f'<span class="text">ref: {ref_h}</span><br><span class="text">hyp: {hyp_h}</span></div>')
        rows.append([html.escape(f'{w["page"]} / {w["id"]}'), img + "".join(diffs)])
    if not rows:
        return '<p class="note">No line-level results.</p>'
    return ('<p class="note">Ranked by the character edits of the first decoder; '
            '<span class="sub">substitution</span> <span class="del">deletion</span> '
            '<span class="ins">insertion</span>.</p>'
            + _table(["page / line", "image and diff"], rows, "worst-lines", raw=True))


def _pages_section(report: dict[str, Any]) -> str:
    names = [e["decoder"] for e in report["summary"]]
    headers = ["page", "GT lines", "detected", "recall@0.5", "precision@0.5"]
    headers += [f"page CER % {n}" for n in names] + [f"line CER % {n}" for n in names]
    headers += [f"page text diff ({names[0]})" if names else "page text"]
    rows = []
    for p in report["pages"]:
        ref_h, hyp_h = diff_html(p["ref"], p["hyp"][names[0]]) if names else (html.escape(p["ref"]), "")
        text = (f'<details><summary>{html.escape(str(p.get("char_edits", {}).get(names[0], "")))} edits'
                f'</summary><span class="text">ref: {ref_h}</span><br><span class="text">hyp: {hyp_h}</span>'
                f'</details>') if names else ref_h
        rows.append([html.escape(str(p["id"])), str(p["gt_lines"]), str(p["detected_lines"]),
                     html.escape(_num(p.get("recall50"))), html.escape(_num(p.get("precision50")))]
                    + [_pct(p.get("cer", {}).get(n)) for n in names]
                    + [_pct(p.get("line_cer", {}).get(n)) for n in names] + [text])
    return _table(headers, rows, "pages", raw=True)


def _sclite_section(report: dict[str, Any]) -> str:
    sc = report.get("sclite")
    if not sc:
        return ""
    if not sc.get("available"):
        return f'<h2 id="sclite">sclite</h2><p class="note">{html.escape(sc.get("note", ""))}</p>'
    rows = []
    for name, levels in sc["per_decoder"].items():
        for level, s in levels.items():
            rows.append([name, level, _pct(s["jiwer_wer"]), _pct(s["wer"]), s["word_edits"], s["ref_words"]])
    return ('<h2 id="sclite">WER: jiwer and NIST sclite</h2><p class="note">sclite run case-sensitive '
            '(<code>-s</code>), pooled (its Sum row), insertions counted.</p>'
            + _table(["decoder", "level", "jiwer WER %", "sclite WER %", "sclite word edits", "reference words"],
                     rows, "sclite-table"))


def render_html(report: dict[str, Any], chart_png: bytes | None = None, title: str | None = None) -> str:
    """The whole report page as a string (no external resources)."""
    if chart_png is None:
        chart_png = cer_chart_png(report)
    chart = base64.b64encode(chart_png).decode("ascii")
    t = report.get("timings", {})
    det = report.get("detection") or {}
    split = f" ({report['split']})" if report.get("split") else ""
    title = title or f"Evaluation of {report.get('records', '')}{split}"
    stage = t.get("seconds_per_page", {})
    speed_rows = [["pages", report.get("num_pages")], ["ground-truth lines", report.get("num_gt_lines")],
                  ["detected lines", report.get("num_detected_lines")],
                  ["line recall @ IoU 0.5", _num(det.get("recall"))],
                  ["line precision @ IoU 0.5", _num(det.get("precision"))],
                  ["pages / second (all decoders)", _num(t.get("pages_per_second"))],
                  ["lines / second, line level", _num(t.get("line_level_lines_per_second"), 2)]]
    speed_rows += [[f"seconds per page: {k}", _num(v, 4)] for k, v in stage.items()]
    decoders = ", ".join(d["name"] for d in report.get("decoders", []))
    defs = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                   for k, v in report.get("definitions", {}).items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">backend {html.escape(str(report.get('backend', '')))}; decoders {html.escape(decoders)};
{html.escape(str(report.get('num_pages', 0)))} pages; {html.escape(str(report.get('date', '')))}</p>
<h2 id="summary-heading">Summary (pooled rates, %)</h2>
{_table(["decoder", "line CER", "line WER", "page CER", "page WER", "mean page CER (contrast)",
         "decode s/page"], _summary_rows(report), "summary")}
<p class="note">Line level: the recogniser on the ground-truth line boxes. Page level: the full pipeline.</p>
<img id="cer-chart" alt="CER by decoder" src="data:image/png;base64,{chart}">
<h2 id="detection-heading">Line detection and speed</h2>
{_table(["measure", "value"], speed_rows, "detection")}
<p class="note">{html.escape(str(t.get('stage_note', '')))}</p>
{_sclite_section(report)}
<h2 id="confusions-heading">Character confusions</h2>
{_confusion_section(report)}
<h2 id="worst-heading">Worst lines</h2>
{_worst_section(report)}
<h2 id="pages-heading">Pages</h2>
{_pages_section(report)}
<h2 id="definitions">Definitions</h2><ul>{defs}</ul>
</body></html>
"""


def chart_path_for(path: str | os.PathLike) -> Path:
    """Where the chart PNG of the report at ``path`` goes: ``NAME.cer.png`` beside it."""
    p = Path(path)
    return p.with_name(p.stem + ".cer.png")


def write_html_report(report: dict[str, Any], path: str | os.PathLike, title: str | None = None
                      ) -> tuple[Path, Path]:
    """Write ``path`` (HTML) and its chart PNG beside it, atomically; returns both paths."""
    from htr_tf.fileio import atomic_write_bytes, atomic_write_text

    png = cer_chart_png(report)
    chart = chart_path_for(path)
    atomic_write_bytes(chart, png)
    atomic_write_text(path, render_html(report, png, title))
    return Path(path), chart
