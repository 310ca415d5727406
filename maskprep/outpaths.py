"""Where a command may write: one rule for output folders, reports and previews.

Every file a command writes by name (a stage's OUT, ``--preview``, ``audit --html/--json``,
``maskprep-train --out``) follows the same promise: never inside a tree the command reads (its
inputs would change, and a report inside a class folder is taken for a photo by the next run), and
never over an existing file without ``--overwrite``. Light on imports so any command can use it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable


class PathRefused(ValueError):
    """A path a command must not write to; the message is one line for the user."""


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` is ``root`` or lies under it (both resolved, so links and ``..`` count)."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p == r or r in p.parents


def check_report_path(path: str | os.PathLike, option: str, reads: Iterable[str | os.PathLike] = (),
                      replace: bool = False) -> Path:
    """Refuse a report/preview file path that lies inside a tree the command reads (``reads``), is
    a folder, or exists while ``replace`` (the command's ``--overwrite``) is off. Returns the path.

    ``option`` names the flag in the message (``--preview``). Call it before the work starts, so a
    refusal costs nothing.
    """
    path = Path(path)
    for root in reads:
        if root is not None and is_inside(path, root):
            raise PathRefused(f"{option} {path} is inside the dataset tree {root}: write it elsewhere "
                              "(a file there would change the input or be taken for data)")
    if path.is_dir():
        raise PathRefused(f"{option} {path} is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not replace:
        raise PathRefused(f"{option} {path} already exists: pass --overwrite to replace it, or choose "
                          "another name")
    return path


def check_output_dir(path: str | os.PathLike, option: str, reads: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output folder that is, or lies inside, a tree the command reads. Returns the path."""
    path = Path(path)
    for root in reads:
        if root is not None and is_inside(path, root):
            raise PathRefused(f"{option} {path} is inside the dataset tree {root}: choose a folder "
                              "elsewhere (files written there would be read as data)")
    return path
