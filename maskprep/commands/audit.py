"""``maskprep audit``: class balance, bad files, duplicates and train/test leakage of an image tree."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from maskprep.audit.balance import DEFAULT_MAX_IMBALANCE
from maskprep.audit.duplicates import DEFAULT_NEAR_THRESHOLD
from maskprep.audit.files import DEFAULT_MAX_ASPECT, DEFAULT_MIN_SIDE
from maskprep.audit.manager import FAIL_CONDITIONS
from maskprep.cli import InputError, engine_options, engine_spec, friendly_errors
from maskprep.images import IMAGE_EXTENSIONS
from maskprep.runner import default_workers


def _parse_fail_on(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    if not value:
        return []
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in FAIL_CONDITIONS]
    if unknown:
        raise click.BadParameter(f"unknown condition {', '.join(unknown)}; choose from "
                                 f"{', '.join(FAIL_CONDITIONS)}")
    return names


@click.command("audit")
@click.argument("data", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every finding to this JSON file (schema: docs/audit.md).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one self-contained HTML page with thumbnails of every flagged group.")
@click.option("--fail-on", callback=_parse_fail_on, metavar="LIST",
              help="Exit with code 1 when any of these hold (comma-separated): "
                   + ", ".join(FAIL_CONDITIONS) + ". For CI. Default: always exit 0.")
@click.option("--identity", is_flag=True,
              help="Also find the same person in two different photos in two splits (dlib face "
                   "descriptors, distance < 0.6). Slow: face detection plus a descriptor per face, "
                   "measured 0.5-1.5 s per photo per core on this machine.")
@click.option("--near-threshold", type=click.IntRange(0, 32), default=DEFAULT_NEAR_THRESHOLD,
              show_default=True, metavar="BITS",
              help="Hash bits (of 64; pHash and dHash must both be within) for near duplicates. "
                   "Rescaled or recompressed copies measure 0-2; different tightly cropped faces start "
                   "to match at 10.")
@click.option("--min-side", type=click.IntRange(1), default=DEFAULT_MIN_SIDE, show_default=True,
              help="Flag images whose shorter side is below this many pixels as tiny.")
@click.option("--max-aspect", type=click.FloatRange(1.0), default=DEFAULT_MAX_ASPECT, show_default=True,
              help="Flag images longer than this ratio (longer side / shorter side).")
@click.option("--max-imbalance", type=click.FloatRange(1.0), default=DEFAULT_MAX_IMBALANCE,
              show_default=True, help="Flag a split whose largest class is this many times its smallest.")
@click.option("--workers", "-j", type=click.IntRange(min=0), default=0,
              help=f"Processes that read and hash images (default: all cores, here {default_workers()}).")
@click.option("--overwrite", is_flag=True, help="Replace existing --json/--html files.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@engine_options
@friendly_errors
def command(data: Path, json_path: Path | None, html_path: Path | None, fail_on: list[str], identity: bool,
            near_threshold: int, min_side: int, max_aspect: float, max_imbalance: float, workers: int,
            overwrite: bool, quiet: bool) -> None:
    """Audit DATA: class balance, bad files, duplicates, train/val/test leakage.

    DATA holds class/ folders, or split/class/ folders (train, val/valid, test), found automatically;
    manifest.jsonl files of earlier maskprep stages are read when present. Nothing is changed.

    \b
    Checks:
      balance     counts per split and class, imbalance ratio, share drift, class weights
      files       unreadable (with the reason), tiny, grayscale, extreme aspect ratio
      duplicates  same decoded pixels; near copies (pHash, mirror-aware, resize/recompress-proof)
      leakage     copies, variants of one source, masked copies of a photo, and (--identity)
                  the same person, in two splits
      conflicts   one picture under two classes

    \b
    Examples:
      maskprep audit data/ --html audit.html
      maskprep audit data/ --json audit.json --fail-on leakage,duplicates   # in CI

    Exit codes: 0 done (and no --fail-on condition holds), 1 a --fail-on condition holds,
    2 usage error (missing folder, bad option).
    """
    from maskprep.audit import audit, summary_lines, write_html, write_json
    from maskprep.engines import use_engine

    if not data.is_dir():
        raise InputError(f"{data}: no such folder")
    from maskprep.outpaths import check_report_path
    for option, path in (("--json", json_path), ("--html", html_path)):
        if path is not None:   # checked before the audit runs, not after it
            check_report_path(path, option, reads=[data], replace=overwrite)
    with use_engine(engine_spec()):  # the reading and hashing pass runs on the chosen engine
        report = audit(data, near_threshold=near_threshold, identity=identity, workers=workers or None,
                       progress=False if quiet else None, min_side=min_side, max_aspect=max_aspect,
                       max_imbalance=max_imbalance)
    if not report.dataset.entries:
        raise InputError(f"{data}: no images found (looked for {' '.join(sorted(IMAGE_EXTENSIONS))})")
    for line in summary_lines(report):
        click.echo(line)
    if json_path is not None:
        click.echo(f"  json: {write_json(report, json_path)}")
    if html_path is not None:
        click.echo(f"  html: {write_html(report, html_path)}")
    failed = report.failed(fail_on)
    if failed:
        click.echo(f"audit failed on: {', '.join(failed)}", err=True)
        sys.exit(1)
