"""File problems: unreadable (with the reason), tiny, grayscale, extreme aspect ratio."""
from __future__ import annotations

from typing import Any, Sequence

from maskprep.audit.scan import FileEntry

DEFAULT_MIN_SIDE = 32      # a face below 32 px has no usable detail for a 224 px classifier
DEFAULT_MAX_ASPECT = 3.0   # longer side over shorter side; banners and strips are rarely faces


def check_files(entries: Sequence[FileEntry], min_side: int = DEFAULT_MIN_SIDE,
                max_aspect: float = DEFAULT_MAX_ASPECT) -> dict[str, list[dict[str, Any]]]:
    """Lists of ``unreadable`` (path, reason, detail), ``tiny`` (path, width, height), ``grayscale``
    (path) and ``extreme_aspect`` (path, aspect) files."""
    out: dict[str, list[dict[str, Any]]] = {"unreadable": [], "tiny": [], "grayscale": [],
                                            "extreme_aspect": []}
    for e in entries:
        if not e.ok:
            out["unreadable"].append({"path": e.rel, "reason": e.error, "detail": e.detail[:200]})
            continue
        if min(e.width, e.height) < min_side:
            out["tiny"].append({"path": e.rel, "width": e.width, "height": e.height})
        if e.grayscale:
            out["grayscale"].append({"path": e.rel})
        aspect = max(e.width, e.height) / max(1, min(e.width, e.height))
        if aspect > max_aspect:
            out["extreme_aspect"].append({"path": e.rel, "aspect": round(aspect, 2)})
    return out
