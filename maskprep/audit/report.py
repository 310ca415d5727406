"""Show an audit: a terminal summary, a JSON document, a self-contained HTML page with thumbnails."""
from __future__ import annotations

import base64
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
                 f"{d['settings']['near_threshold']} bits, mirror-aware); {c['recorded_variants']} recorded "
                 f"variants (copies the manifests record in one split: not findings, see --html/--json)")
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
details>summary{cursor:pointer}details>summary h2{display:inline}ul.why{margin:4px 0 8px;font-size:12px}
.missing{width:160px;height:100px;background:#eee;display:flex;align-items:center;justify-content:center}
"""


def _describe_leak(g: dict[str, Any]) -> str:
    text = f"{_KIND_TEXT.get(g['kind'], g['kind'])} across {' / '.join(g['splits'])}"
    if g["kind"] == "masked_copy":
        text += f" (lowest agreement {g['agreement']:.0%})"
    elif g["kind"] == "variant":
        text += f" (source {g['source']}, from {' and '.join(g['evidence'])})"
    elif g["kind"] == "exact":
        text += f" ({g['how']} in two splits; the lines below say which files are which)"
    return text


def _pair_text(p: dict[str, Any]) -> str:
    """Why two files of a group are flagged together, in words, with the numbers."""
    if "phash" in p:
        return (f"near: pHash {p['phash']} bits, dHash {p['dhash']} bits"
                + (", mirrored" if p.get("mirrored") else ""))
    if "distance" in p:
        return f"same person: face distance {p['distance']}"
    if "agreement" in p:
        t = p.get("transform") or {}
        bits = [f"masked copy: agreement {p['agreement']:.0%}"]
        if t.get("method") in ("features", "landmarks"):
            bits.append(f"{t['inliers']} of {t['matches']} feature matches fit one transform")
        if t.get("method") == "landmarks":   # a mask up to the eyes: judged outside the lower face
            bits.append(f"the upper face correlates {t['correlation']:.2f}")
        if t.get("mirrored"):
            bits.append("mirrored")
        if t.get("rotation"):
            bits.append(f"rotated {t['rotation']:+g} deg")
        if t.get("scale") not in (None, 1.0):
            bits.append(f"scaled {t['scale']:g}x")
        return ", ".join(bits)
    return ""


def _why(g: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(a, b or "", why)`` lines for a group: which files are the same pixels, near, masked copies."""
    lines = [(" = ".join(files), "", "same pixels") for files in g.get("same_pixels", [])]
    if "kind" in g and g["kind"] in ("same bytes", "same pixels", "same pixels up to decoding noise"):
        lines.append((" = ".join(g["files"]), "", g["kind"]))
    for x in g.get("exact", []):   # recorded variants
        lines.append((" = ".join(x["files"]), "", x["kind"]))
    for p in g.get("pairs", [])[:MAX_FILES_PER_GROUP * 2]:
        lines.append((p["a"], p["b"], _pair_text(p)))
    return lines


_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>maskprep audit</title><style>{{ css|safe }}</style></head><body>
<h1>maskprep audit of {{ d.root }}</h1>
<p>{{ c.files }} files ({{ c.readable }} readable), layout <b>{{ d.layout }}</b>,
splits {{ d.splits|join(", ") }}, classes {{ d.classes|map("cls")|join(", ") or "(none)" }};
{{ "%.1f"|format(d.seconds) }} s. Conditions that hold:
{% if held %}<span class="bad">{{ held|join(", ") }}</span>{% else %}<span class="ok">none</span>{% endif %}</p>
<table>{% for title, n in rows %}
<tr><th class="l">{{ title }}</th><td class="{{ 'bad' if n else 'ok' }}">{{ n }}</td></tr>{% endfor %}
<tr><th class="l">Recorded variants (not findings)</th><td>{{ c.recorded_variants }}</td></tr></table>
<details open><summary><h2>Class balance</h2></summary>
<table><tr><th class="l">split</th>{% for x in b.classes %}<th>{{ x|cls }}</th>{% endfor %}<th>ratio</th></tr>
{% for s in b.splits %}<tr><td class="l">{{ s }}</td>
{% for x in b.classes %}<td>{{ b.counts[s][x] }} ({{ "%.0f"|format(b.shares[s][x] * 100) }}%)</td>{% endfor %}
<td class="{{ 'bad' if s in flagged else '' }}">{{ ratio(b.ratio[s]) }}</td></tr>{% endfor %}</table>
<p>Suggested class weights (n / (k * count), from {{ b.class_weights_from }}):
{% for k, v in b.class_weights.items() %}{{ k|cls }} {{ "%g"|format(v) }}{{ ", " if not loop.last }}{% endfor %}</p>
{% if b.drifted %}<p class="bad">Class shares drift between splits: {{ drift }}</p>{% endif %}
</details>
{% for sec in sections %}
<details {{ "open" if sec.open }}><summary><h2>{{ sec.title }} ({{ sec.total }})</h2></summary>
{% if sec.note %}<p>{{ sec.note }}</p>{% endif %}
{% if not sec.groups and not sec.note %}<p class="ok">None found.</p>{% endif %}
{% for g in sec.groups %}<div class="group"><div class="head">{{ g.head }}</div>
{% if g.why %}<ul class="why">{% for a, bb, why in g.why %}
<li><b>{{ why }}</b>: {{ a }}{% if bb %} &harr; {{ bb }}{% endif %}</li>{% endfor %}</ul>{% endif %}
<div class="row">{% for fig in g.figures %}<figure>
{% if fig.uri %}<img src="{{ fig.uri }}" alt="{{ fig.rel }}">{% else %}<div class="missing">unreadable</div>{% endif %}
<figcaption><span class="split {{ fig.split }}">{{ fig.split }}</span>{{ fig.rel }}{{ fig.size }}</figcaption>
</figure>{% endfor %}
{% if g.more > 0 %}<p>... and {{ g.more }} more</p>{% endif %}</div></div>{% endfor %}
{% if sec.total > sec.groups|length %}
<p>... {{ sec.total - sec.groups|length }} more groups in the JSON report.</p>{% endif %}
</details>{% endfor %}
<details {{ "open" if f.unreadable }}><summary><h2>Unreadable files ({{ f.unreadable|length }})</h2></summary>
{% if f.unreadable %}<table><tr><th class="l">file</th><th class="l">reason</th></tr>
{% for x in f.unreadable[:1000] %}
<tr><td class="l">{{ x.path }}</td><td class="l">{{ x.reason }}</td></tr>{% endfor %}</table>
{% else %}<p class="ok">None.</p>{% endif %}</details>
</body></html>
"""


class _Figures:
    """Thumbnails of files, each read once however many groups show it."""

    def __init__(self, report: "AuditReport"):
        self.root = report.dataset.root
        self.by_rel = {e.rel: e for e in report.dataset.entries}
        self._uris: dict[str, str | None] = {}

    def figure(self, rel: str) -> dict[str, Any]:
        if rel not in self._uris:
            self._uris[rel] = _thumb_uri(self.root / rel)
        e = self.by_rel.get(rel)
        return {"uri": self._uris[rel], "rel": rel, "split": e.split if e else "",
                "size": f" {e.width}x{e.height}" if e and e.ok else ""}


def _section(figures: _Figures, title: str, groups: list[dict[str, Any]], describe, open_: bool = True,
             note: str = "", why: bool = True) -> dict[str, Any]:
    shown = []
    for g in groups[:MAX_GROUPS_PER_SECTION]:
        files = g["files"][:MAX_FILES_PER_GROUP]
        shown.append({"head": describe(g), "why": _why(g) if why else [],
                      "figures": [figures.figure(r) for r in files], "more": len(g["files"]) - len(files)})
    return {"title": title, "groups": shown, "total": len(groups), "open": open_ and bool(groups), "note": note}


def _environment():
    import jinja2
    # autoescape on: every file, folder and class name from the file system is escaped, whatever
    # template line prints it (a class folder named <script> stays text).
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    env.filters["cls"] = _cls
    return env


def render_html(report: "AuditReport") -> str:
    """The whole report as one HTML page; images are embedded as base64 thumbnails."""
    d = report.to_dict()
    figures = _Figures(report)
    c, b, f = d["counts"], d["balance"], d["files"]
    rows = [("Leaks across splits", sum(c["leaks"].values())), ("Exact duplicate groups", c["exact_groups"]),
            ("Near duplicate groups", c["near_groups"]), ("Label conflicts", c["label_conflicts"]),
            ("Unreadable files", c["unreadable"]), ("Tiny files", len(f["tiny"])),
            ("Grayscale files", len(f["grayscale"])), ("Extreme aspect ratio", len(f["extreme_aspect"]))]
    sections = []
    if len(d["splits"]) > 1:
        sections.append(_section(figures, "Leakage across splits", d["leakage"], _describe_leak))
    else:
        sections.append({"title": "Leakage across splits", "groups": [], "total": 0, "open": True,
                         "note": f"Not checked: {_single_split_text(d)}."})
    sections.append(_section(figures, "Label conflicts", d["label_conflicts"],
                             lambda g: f"{_KIND_TEXT.get(g['kind'], g['kind'])} under classes "
                                       f"{', '.join(_cls(x) for x in g['classes'])}"))
    sections.append(_section(figures, "Exact duplicates", d["duplicates"]["exact"],
                             lambda g: f"{g['kind']}, {len(g['files'])} files"))
    sections.append(_section(figures, "Near duplicates", d["duplicates"]["near"],
                             lambda g: f"{len(g['files'])} files"))
    sections.append(_section(
        figures, "Recorded variants (not findings: the manifests record them as copies of one photo in one "
                 "split)", d["duplicates"]["recorded"],
        lambda g: f"{len(g['files'])} files from {g['source']} in {g['split']}", open_=False))
    for key, title in (("tiny", "Tiny images"), ("grayscale", "Grayscale images"),
                       ("extreme_aspect", "Extreme aspect ratio")):
        items = f[key]
        sections.append(_section(figures, title, [{"files": [x["path"] for x in items[i:i + MAX_FILES_PER_GROUP]]}
                                                  for i in range(0, len(items), MAX_FILES_PER_GROUP)],
                                 lambda g: f"{len(g['files'])} files", why=False))
    held = [k for k, v in d["conditions"].items() if v]
    return _environment().from_string(_TEMPLATE).render(
        css=_CSS, d=d, c=c, b=b, f=f, rows=rows, held=held, sections=sections, ratio=_fmt_ratio,
        flagged={x["split"] for x in b["imbalanced"]}, drift=_drift_text(b) if b["drifted"] else "",
)


def write_html(report: "AuditReport", path: str | os.PathLike) -> Path:
    """Write the self-contained HTML report (atomic)."""
    return write_bytes_atomic(path, _utf8(render_html(report)))
