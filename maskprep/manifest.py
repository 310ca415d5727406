"""The manifest: one JSON line per output (or per skipped/failed input), the contract between stages.

Every stage writes ``manifest.jsonl`` at the root of its output tree. Each record says which input
file an output came from (``source``, relative to the input root), which original photo it descends
from (``origin``, carried through every stage), what was done (``stage``, ``variant``, ``params``),
with which ``seed``, and whether it worked (``status`` with a ``reason``). ``audit`` and
``maskprep-train`` group files by ``origin`` so copies of one photo never straddle a split.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterable

MANIFEST_NAME = "manifest.jsonl"
RUN_INFO_NAME = "run.json"
STATUSES = ("ok", "skipped", "failed")
VARIANT_SEPARATOR = "__"


@dataclass
class Record:
    """One manifest line. ``output`` is None for inputs that produced nothing (skipped or failed)."""

    stage: str
    source: str
    status: str
    output: str | None = None
    origin: str = ""
    reason: str = ""
    variant: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")
        if not self.origin:
            self.origin = self.source

    def to_json(self) -> str:
        """One JSON line, valid UTF-8 whatever the file names are.

        A file name that is not UTF-8 (``caf\xe9.jpg`` from an old Latin-1 disk) reaches Python as
        a string with lone surrogates (``surrogateescape``), which UTF-8 cannot encode. Such a
        record is written with ASCII escapes instead (``"caf\\udce9.jpg"``): still one valid line,
        and ``json.loads`` gives back the very string that ``open()`` needs to find the file.
        """
        # A shallow dict: asdict() deep-copies every nested list (68 landmarks per face, per
        # record) only for json to walk them again, which made the manifest the parent's bottleneck.
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        text = json.dumps(fields, ensure_ascii=False, sort_keys=False, default=_jsonable)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = json.dumps(fields, ensure_ascii=True, sort_keys=False, default=_jsonable)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        """A record from a parsed manifest line; ValueError (saying which field) for a malformed one."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        for name in ("stage", "source", "status"):
            if name not in known:
                raise ValueError(f"no {name!r} field")
        for name, kinds in _FIELD_TYPES.items():
            if name in known and not isinstance(known[name], kinds):
                raise ValueError(f"{name!r} must be {_KIND_WORDS[name]}, not {type(known[name]).__name__}")
        if known.get("output") is not None and not safe_rel(known["output"]):
            raise ValueError(f"'output' {known['output']!r} is not a relative path inside the tree")
        return cls(**known)


# The type each manifest field must have when present: a crafted or damaged line (``"output": ["x"]``)
# is refused at the reader, with its line number, instead of failing later in path arithmetic.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "stage": (str,), "source": (str,), "status": (str,), "output": (str, type(None)), "origin": (str,),
    "reason": (str,), "variant": (str,), "params": (dict,), "seed": (int, type(None)), "info": (dict,),
}
_KIND_WORDS = {"output": "a string or null", "params": "an object", "info": "an object",
               "seed": "an integer or null"}
_KIND_WORDS.update({k: "a string" for k in _FIELD_TYPES if k not in _KIND_WORDS})


def safe_rel(rel: str) -> bool:
    """True for a path that stays inside its root: relative, no ``..``, not empty."""
    path = PurePosixPath(rel)
    return bool(rel) and not path.is_absolute() and ".." not in path.parts and "\x00" not in rel


class ManifestError(ValueError):
    """A manifest line that is not a record (other than a last line cut short); names file and line."""


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and paths into plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class ManifestWriter:
    """Appends records to a manifest file, one flushed line each, so an interrupted run keeps what it did.

    Appending first cuts off a last line left incomplete (disk full, power loss, kill -9): the
    first new record would otherwise be glued onto it and lost with it.
    """

    def __init__(self, path: str | os.PathLike, truncate: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not truncate:
            drop_incomplete_last_line(self.path)
        self._fh: IO[str] = open(self.path, "w" if truncate else "a", encoding="utf-8")

    def write(self, records: Iterable[Record]) -> None:
        # One write call per input file: its records land together or not at all.
        text = "".join(r.to_json() + "\n" for r in records)
        if text:
            self._fh.write(text)
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def drop_incomplete_last_line(path: str | os.PathLike) -> bool:
    """Cut a manifest back to before its last, unfinished write; True when it cut.

    The writer writes each input's records in one ``write`` ending in ``\\n``, so bytes after the
    last newline are a write that did not finish. Its first lines may have landed whole, so the
    complete lines of the last complete line's source go too: that input is redone whole by
    ``--resume`` (at worst an input that was finished is redone, to the same bytes).
    """
    try:
        with open(path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return False
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return False
            # One input's records are a few KB; the window is generous and bounded.
            start = max(0, size - _TAIL_WINDOW)
            fh.seek(start)
            tail = fh.read()
            lines = tail.split(b"\n")[:-1]   # complete lines (the first may be partial if start > 0)
            keep = len(lines)
            last_source = _source_of(lines[-1]) if lines else None
            while keep > (1 if start > 0 else 0) and last_source is not None \
                    and _source_of(lines[keep - 1]) == last_source:
                keep -= 1
            fh.truncate(start + sum(len(line) + 1 for line in lines[:keep]) if lines else start)
            return True
    except FileNotFoundError:
        return False


_TAIL_WINDOW = 1 << 22


def _source_of(line: bytes) -> str | None:
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data.get("source") if isinstance(data, dict) else None


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """All records of a manifest file (or of ``manifest.jsonl`` inside a folder).

    A missing file gives an empty list. A last line cut short by an interrupted run (no final
    newline: a write that did not finish, perhaps inside a multi-byte character) is ignored. Any
    other line that is not a record raises :class:`ManifestError` naming the file and the line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):   # a byte-order mark left by an editor
        data = data[3:]
    lines = data.split(b"\n")
    records = []
    for number, raw in enumerate(lines, 1):
        cut = number == len(lines)  # after the last newline: a write that did not finish
        if not raw.strip():
            continue
        try:
            records.append(Record.from_dict(json.loads(raw.decode("utf-8"))))
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as exc:
            if cut:
                continue
            raise ManifestError(f"{path}, line {number}: not a manifest record ({_why(exc)}); "
                                "repair or delete that line") from None
    return records


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg}"
    return str(exc)


def latest_attempts(records: Iterable[Record]) -> dict[str, list[Record]]:
    """``{source: the records of its latest attempt}``: a resumed or re-run manifest may repeat inputs.

    The runner writes all records of one attempt at an input in one go, so an attempt is a run of
    consecutive records of one source. Two attempts can still be adjacent (the last input of a run
    and the first of its ``--resume``); a new attempt is taken to start at a ``failed`` record and
    right after one (a failure is recorded alone), and at an output the attempt already wrote (an
    attempt writes each output once). Sources are in the order of their latest attempts.
    """
    latest: dict[str, list[Record]] = {}
    previous: Record | None = None
    outputs: set[str] = set()
    for rec in records:
        if (previous is None or rec.source != previous.source or "failed" in (rec.status, previous.status)
                or rec.output in outputs):
            latest.pop(rec.source, None)
            latest[rec.source] = []
            outputs = set()
        latest[rec.source].append(rec)
        if rec.output is not None:
            outputs.add(rec.output)
        previous = rec
    return latest


def latest_records(records: Iterable[Record]) -> list[Record]:
    """The records of each source's latest attempt (see :func:`latest_attempts`), in manifest order."""
    return [rec for attempt in latest_attempts(records).values() for rec in attempt]


def origin_map(root: str | os.PathLike) -> dict[str, str]:
    """``{output path relative to root: origin}`` for every ok output recorded in ``root``'s manifest."""
    return {
        rec.output: rec.origin
        for rec in read_manifest(root)
        if rec.status == "ok" and rec.output
    }


def split_variant(name: str) -> tuple[str, str]:
    """``"a.b__flip.jpg" -> ("a.b", "flip")``; a name without a variant gives ``(stem, "")``."""
    stem = PurePosixPath(name).stem
    if VARIANT_SEPARATOR in stem:
        base, variant = stem.split(VARIANT_SEPARATOR, 1)
        if base:
            return base, variant
    return stem, ""


def variant_path(rel: str | PurePosixPath, variant: str, ext: str | None = None) -> str:
    """``("cls/a.b.jpg", "flip") -> "cls/a.b__flip.jpg"``: the output name of one variant of an input."""
    rel = PurePosixPath(rel)
    suffix = rel.suffix if ext is None else ext
    name = f"{rel.stem}{VARIANT_SEPARATOR}{variant}{suffix}" if variant else f"{rel.stem}{suffix}"
    return str(rel.with_name(name))


def group_key(rel: str, origins: dict[str, str] | None = None) -> str:
    """The key shared by every copy of one original photo.

    From the manifest's ``origin`` when the file is recorded there; otherwise from the file name
    (``cls/a__flip.jpg`` and ``cls/a.jpg`` both give ``cls/a``), the convention every stage writes.
    """
    if origins and rel in origins:
        origin = PurePosixPath(origins[rel])
        return str(origin.with_name(split_variant(origin.name)[0]))
    p = PurePosixPath(rel)
    return str(p.with_name(split_variant(p.name)[0]))
