"""Show an audit: a terminal summary, a JSON document, a self-contained HTML page with thumbnails."""
from __future__ import annotations

import base64
import html
import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from maskprep.images import ImageReadError, encode_image, read_image, write_bytes_atomic

if TYPE_CHECKING:
    from maskprep.audit.manager import AuditReport

THUMB_MAX_SIDE = 160
MAX_GROUPS_PER_SECTION = 200   # keeps the page openable on datasets with thousands of duplicates
MAX_FILES_PER_GROUP = 12

_KIND_TEXT = {
    "exact": "same pixels", "near": "near duplicate (resized, recompressed or mirrored)",
    "variant": "copies of one source photo", "masked_copy": "same photo, lower face changed (masked copy)",
    "identity": "same person",
}


def _cls(name: str) -> str:
    """Files at the root of a class tree have no class folder; say so instead of printing nothing."""
    return name or "(no class)"


def _fmt_ratio(r: float | None) -> str:
    return "inf" if r is None else f"{r:g}"


def _drift_text(balance: dict) -> str:
    """``"with_mask 30 pts, ..."``: how far each drifted class's share moves between splits."""
    return ", ".join(f"{_cls(x['class'])} {x['drift'] * 100:.0f} pts" for x in balance["drifted"])


def _single_split_text(d: dict) -> str:
    """Why there is no leakage section: the tree has one split only."""
    where = (f"only {d['splits'][0]}/" if d["layout"] == "split/class" and d["splits"]
             else "no train/val/test folders")
    return f"one split only ({where}), nothing to leak"


def summary_lines(report: "AuditReport", max_listed: int = 10) -> list[str]:
    """The terminal summary: balance table, counts of every finding, the first leaks."""
    d = report.to_dict()
    b = d["balance"]
    c = d["counts"]
    lines = [f"audit: {d['root']}  ({d['layout']} layout, {c['files']} files, {c['readable']} readable, "
             f"{d['seconds']:.1f} s)"]
    classes = b["classes"]
    width = max([5, *(len(_cls(x)) for x in classes)])
    lines.append("  " + "split".ljust(8) + "".join(_cls(x).rjust(width + 2) for x in classes)
                 + "total".rjust(8) + "ratio".rjust(8))
    flagged = {f["split"] for f in b["imbalanced"]}
    for s in b["splits"]:
        row = b["counts"][s]
        lines.append("  " + s.ljust(8) + "".join(str(row[x]).rjust(width + 2) for x in classes)
                     + str(sum(row.values())).rjust(8) + _fmt_ratio(b["ratio"][s]).rjust(8)
                     + ("  IMBALANCED" if s in flagged else ""))
    weights = ", ".join(f"{_cls(k)} {v:g}" for k, v in b["class_weights"].items())
    lines.append(f"  class weights ({b['class_weights_from']}): {weights}")
    if b["drifted"]:
        lines.append("  share drift between splits: " + _drift_text(b))
    f = d["files"]
    reasons = Counter(x["reason"] for x in f["unreadable"])
    why = f" ({', '.join(f'{n} {r}' for r, n in reasons.most_common())})" if reasons else ""
    lines.append(f"  files: {len(f['unreadable'])} unreadable{why}, {len(f['tiny'])} tiny "
                 f"(< {d['settings']['min_side']} px), {len(f['grayscale'])} grayscale, "
                 f"{len(f['extreme_aspect'])} extreme aspect (> {d['settings']['max_aspect']:g}:1)")
    dup = d["duplicates"]
    lines.append(f"  duplicates: {len(dup['exact'])} exact groups "
                 f"({sum(len(g['files']) for g in dup['exact'])} files), {len(dup['near'])} near groups "
                 f"({sum(len(g['files']) for g in dup['near'])} files, pHash and dHash <= "
                 f"{d['settings']['near_threshold']} bits, mirror-aware)")
    if len(d["splits"]) < 2:
        lines.append(f"  leakage: {_single_split_text(d)}")
    else:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(c["leaks"].items())) or "none"
        lines.append(f"  leakage across splits: {kinds}")
        for finding in d["leakage"][:max_listed]:
            files = " <-> ".join(finding["files"][:4]) + (" ..." if len(finding["files"]) > 4 else "")
            lines.append(f"    [{finding['kind']}] {files}")
        if len(d["leakage"]) > max_listed:
            lines.append(f"    ... and {len(d['leakage']) - max_listed} more (see --json / --html)")
    lines.append(f"  label conflicts (a copy under two classes): {len(d['label_conflicts'])}")
    if d["identity"] is not None:
        i = d["identity"]
        lines.append(f"  identity: {i['faces']} faces, {i['images_without_face']} images without a "
                     f"detected face, {i.get('same_person_pairs', 0)} same-person pairs (< {i['threshold']})")
        for failure in i.get("check_failed", [])[:max_listed]:
            lines.append(f"    face check failed on {failure['file']}: {failure['detail']}")
    held = [k for k, v in d["conditions"].items() if v]
    lines.append("  conditions that hold: " + (", ".join(held) if held else "none"))
    return lines


def write_json(report: "AuditReport", path: str | os.PathLike) -> Path:
    """Write the full findings as JSON (atomic); the schema is in docs/audit.md."""
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=_plain)
    return write_bytes_atomic(path, _utf8(text))


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of a report. A file name that is not valid UTF-8 reaches Python with surrogate
    escapes (``b"\\xff"`` -> ``"\\udcff"``), which strict UTF-8 refuses; they are written as the escape
    text ``\\udcff``, which JSON reads back as the same string (and a browser shows as is)."""
    return text.encode("utf-8", errors="backslashreplace")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _thumb_uri(path: Path) -> str | None:
    """A small JPEG of the image as a data: URI, or None when it cannot be read."""
    try:
        image = read_image(path)
    except (ImageReadError, OSError):
        return None
    h, w = image.shape[:2]
    scale = min(1.0, THUMB_MAX_SIDE / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    return "data:image/jpeg;base64," + base64.b64encode(encode_image(image, "JPEG", 80)).decode("ascii")


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}.bad{color:#b00;font-weight:bold}.ok{color:#070}
.group{background:#fff;border:1px solid #ddd;border-radius:6px;margin:10px 0;padding:8px}
.group .head{font-weight:600;margin-bottom:6px}.row{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:172px}figure img{max-width:160px;max-height:160px;border:1px solid #aaa;display:block}
figcaption{font-size:11px;word-break:break-all}.split{display:inline-block;padding:0 5px;border-radius:3px;
background:#dde;margin-right:3px}.train{background:#cfe8cf}.test{background:#f6d0d0}.val{background:#f3e6b8}
.missing{width:160px;height:100px;background:#eee;display:flex;align-items:center;justify-content:center}
"""


class _Page:
    def __init__(self, report: "AuditReport"):
        self.report = report
        self.root = report.dataset.root
        self.by_rel = {e.rel: e for e in report.dataset.entries}
        self.parts: list[str] = []
        self._uris: dict[str, str | None] = {}

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, rel: str) -> str:
        if rel not in self._uris:
            self._uris[rel] = _thumb_uri(self.root / rel)
        uri = self._uris[rel]
        e = self.by_rel.get(rel)
        split = e.split if e else ""
        img = f'<img src="{uri}" alt="{html.escape(rel)}">' if uri else '<div class="missing">unreadable</div>'
        size = f" {e.width}x{e.height}" if e and e.ok else ""
        return (f'<figure>{img}<figcaption><span class="split {html.escape(split)}">{html.escape(split)}'
                f'</span>{html.escape(rel)}{size}</figcaption></figure>')

    def groups(self, title: str, groups: list[dict[str, Any]], describe) -> None:
        self.add(f"<h2>{html.escape(title)} ({len(groups)})</h2>")
        if not groups:
            self.add('<p class="ok">None found.</p>')
            return
        for g in groups[:MAX_GROUPS_PER_SECTION]:
            files = g["files"][:MAX_FILES_PER_GROUP]
            more = len(g["files"]) - len(files)
            self.add(f'<div class="group"><div class="head">{html.escape(describe(g))}</div><div class="row">'
                     + "".join(self.figure(r) for r in files)
                     + (f"<p>... and {more} more</p>" if more > 0 else "") + "</div></div>")
        if len(groups) > MAX_GROUPS_PER_SECTION:
            self.add(f"<p>... {len(groups) - MAX_GROUPS_PER_SECTION} more groups in the JSON report.</p>")


def _describe_leak(g: dict[str, Any]) -> str:
    text = f"{_KIND_TEXT.get(g['kind'], g['kind'])} across {' / '.join(g['splits'])}"
    if g["kind"] == "masked_copy":
        text += f" (thumbnails agree outside the lower face: {g['agreement']:.0%} or more)"
    elif g["kind"] == "variant":
        text += f" (source {g['source']}, from {' and '.join(g['evidence'])})"
    elif g["kind"] == "exact":
        text += f" ({g['how']})"
    elif g.get("pairs"):
        p = g["pairs"][0]
        if "phash" in p:
            text += f" (pHash {p['phash']} bits{', mirrored' if p['mirrored'] else ''})"
        elif "distance" in p:
            text += f" (face distance {p['distance']})"
    return text


def render_html(report: "AuditReport") -> str:
    """The whole report as one HTML page; images are embedded as base64 thumbnails."""
    d = report.to_dict()
    page = _Page(report)
    c, b = d["counts"], d["balance"]
    page.add(f"<!doctype html><html><head><meta charset='utf-8'><title>maskprep audit</title>"
             f"<style>{_CSS}</style></head><body>")
    page.add(f"<h1>maskprep audit of {html.escape(d['root'])}</h1>")
    held = [k for k, v in d["conditions"].items() if v]
    page.add(f"<p>{c['files']} files ({c['readable']} readable), layout <b>{d['layout']}</b>, "
             f"splits {', '.join(d['splits'])}, classes {', '.join(d['classes']) or '(none)'}; "
             f"{d['seconds']:.1f} s. Conditions that hold: "
             + (f'<span class="bad">{", ".join(held)}</span>' if held else '<span class="ok">none</span>')
             + "</p>")
    rows = [("Leaks across splits", sum(c["leaks"].values())), ("Exact duplicate groups", c["exact_groups"]),
            ("Near duplicate groups", c["near_groups"]), ("Label conflicts", c["label_conflicts"]),
            ("Unreadable files", c["unreadable"]), ("Tiny files", len(d["files"]["tiny"])),
            ("Grayscale files", len(d["files"]["grayscale"])),
            ("Extreme aspect ratio", len(d["files"]["extreme_aspect"]))]
    page.add("<table>" + "".join(f"<tr><th class='l'>{t}</th><td class='{'bad' if n else 'ok'}'>{n}</td></tr>"
                                 for t, n in rows) + "</table>")
    page.add("<h2>Class balance</h2><table><tr><th class='l'>split</th>"
             + "".join(f"<th>{html.escape(_cls(x))}</th>" for x in b["classes"]) + "<th>ratio</th></tr>")
    flagged = {f["split"] for f in b["imbalanced"]}
    for s in b["splits"]:
        cls = "bad" if s in flagged else ""
        page.add(f"<tr><td class='l'>{html.escape(s)}</td>"
                 + "".join(f"<td>{b['counts'][s][x]} ({b['shares'][s][x]:.0%})</td>" for x in b["classes"])
                 + f"<td class='{cls}'>{_fmt_ratio(b['ratio'][s])}</td></tr>")
    page.add("</table><p>Suggested class weights (n / (k * count), from "
             f"{b['class_weights_from']}): "
             + ", ".join(f"{html.escape(_cls(k))} {v:g}" for k, v in b["class_weights"].items()) + "</p>")
    if b["drifted"]:
        page.add(f"<p class='bad'>Class shares drift between splits: {html.escape(_drift_text(b))}</p>")
    if len(d["splits"]) > 1:
        page.groups("Leakage across splits", d["leakage"], _describe_leak)
    else:
        page.add(f"<h2>Leakage across splits</h2><p>Not checked: {html.escape(_single_split_text(d))}.</p>")
    page.groups("Label conflicts", d["label_conflicts"],
                lambda g: f"{_KIND_TEXT.get(g['kind'], g['kind'])} under classes {', '.join(g['classes'])}")
    page.groups("Exact duplicates", d["duplicates"]["exact"], lambda g: f"{g['kind']}, {len(g['files'])} files")
    page.groups("Near duplicates", d["duplicates"]["near"],
                lambda g: f"{len(g['files'])} files, pHash distances "
                          + ", ".join(str(p["phash"]) + ("m" if p["mirrored"] else "") for p in g["pairs"][:8]))
    f = d["files"]
    page.add(f"<h2>Unreadable files ({len(f['unreadable'])})</h2>")
    if f["unreadable"]:
        page.add("<table><tr><th class='l'>file</th><th class='l'>reason</th></tr>" + "".join(
            f"<tr><td class='l'>{html.escape(x['path'])}</td><td class='l'>{html.escape(x['reason'])}</td></tr>"
            for x in f["unreadable"][:1000]) + "</table>")
    else:
        page.add('<p class="ok">None.</p>')
    for key, title in (("tiny", "Tiny images"), ("grayscale", "Grayscale images"),
                       ("extreme_aspect", "Extreme aspect ratio")):
        items = f[key]
        page.groups(title, [{"files": [x["path"] for x in items[i:i + MAX_FILES_PER_GROUP]]}
                            for i in range(0, len(items), MAX_FILES_PER_GROUP)],
                    lambda g: f"{len(g['files'])} files")
    page.add("</body></html>")
    return "\n".join(page.parts)


def write_html(report: "AuditReport", path: str | os.PathLike) -> Path:
    """Write the self-contained HTML report (atomic)."""
    return write_bytes_atomic(path, _utf8(render_html(report)))
