"""``maskprep detect``: aligned face crops with 68 landmarks, one per face, from a tree of photos."""
from __future__ import annotations

from pathlib import Path

import click

from maskprep.cli import friendly_errors, run_and_report, runner_options

# maskprep.faces's defaults, copied so that building the command (``maskprep --help``) does not
# import OpenCV and dlib; a test in tests/test_runner.py keeps them equal to faces.py's.
DEFAULT_MIN_SCORE = 0.2
DEFAULT_MAX_SIDE = 1280
SMALL_SIDE = 640
MODELS = ("hog", "cnn")
DEFAULT_ALIGN_SIZE = 256
DEFAULT_MARGIN = 0.25


def _parse_upsample(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    if value is None or value.strip().lower() == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or 0-4, got {value!r}") from None
    if not 0 <= number <= 4:
        raise click.BadParameter(f"expected 'auto' or 0-4, got {number}")
    return number


@click.command("detect")
@click.argument("input_dir", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_dir", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--model", type=click.Choice(MODELS), default="hog", show_default=True,
              help="Face detector: hog (dlib HOG, fast: ~0.1 s per photo on one core) or cnn (dlib's "
                   "mmod CNN in torch: also finds turned, dim and partly covered faces, but about "
                   "10x slower on CPU; --min-score then applies to its confidence). Tight face crops "
                   "need neither: with hog a quick look (HOG once on a small padded copy) and a "
                   "crop fit find most of them in a few ms, and small images still without a "
                   "face get the CNN's second opinion on a 140 px copy.")
@click.option("--min-score", type=float, default=DEFAULT_MIN_SCORE, show_default=True,
              help="Drop detections scoring below this. HOG false positives (e.g. a patch of a "
                   "space suit) measured here score 0 and below; real faces 0.3 and up, masked "
                   "faces in crowds from about 0.25. Lower it to keep hard faces, at the risk of "
                   "crops of things that are not faces. The quick look at a crop-shaped photo "
                   "(a padded small copy, which scores lower) keeps hits down to 0.7 below it, "
                   "where their landmarks and pixels must also show a face.")
@click.option("--upsample", default="auto", show_default=True, callback=_parse_upsample,
              metavar="auto|N",
              help=f"Times the searched image is doubled: each step finds faces half as small at "
                   f"4x the cost. auto: photos up to {SMALL_SIDE} px get 1, and 2 when that finds "
                   f"only small faces or none (scene photos); larger photos 0 (faces from ~80 px of "
                   f"the searched copy). Use 1 for big photos of crowds.")
@click.option("--max-side", type=click.IntRange(min=0), default=DEFAULT_MAX_SIDE, show_default=True,
              help="Photos larger than this (longer side, px) are searched on a downscaled copy; "
                   "landmarks and crops still use full resolution. 0 = search at full size "
                   "(slower, finds smaller faces in big photos).")
@click.option("--size", type=click.IntRange(min=8), default=DEFAULT_ALIGN_SIZE, show_default=True,
              help="Side of the square crops (px).")
@click.option("--margin", type=click.FloatRange(min=0), default=DEFAULT_MARGIN, show_default=True,
              help="Space around the face in the crop, as a fraction of the face's extent "
                   "(eyebrows to chin) on each side: 0 = tight, 0.5 = head and shoulders.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="Quality of JPEG crops (crops keep the photo's format).")
@runner_options
@friendly_errors
def command(input_dir: Path, output_dir: Path, model: str, min_score: float, upsample: int | None,
            max_side: int, size: int, margin: float, jpeg_quality: int, workers: int, seed: int,
            overwrite: bool, resume: bool, quiet: bool) -> None:
    """Find faces in the photos under IN; write one aligned crop per face to OUT.

    \b
    OUT mirrors IN: OUT/<same folders>/<stem>__face<k>.<ext>, k = 1 for the largest face, e.g.
      maskprep detect photos/ faces/
      maskprep detect photos/ faces/ --size 224 --margin 0.4 --upsample 1
    Each crop is upright (eyes level), SIZE x SIZE. OUT/manifest.jsonl gets one record per face:
    box and detector score, the 68 landmarks in photo and crop pixels, roll (degrees) and a yaw
    proxy (-1..1, 0 = frontal), and the photo->crop affine matrix. Photos without a face are
    recorded as skipped with reason 'no face'; unreadable files as failed; neither stops the run.
    """
    from maskprep.faces import detect_tree

    summary = run_and_report(lambda: detect_tree(
        input_dir, output_dir, model=model, min_score=min_score, upsample=upsample, max_side=max_side,
        size=size, margin=margin, seed=seed, workers=workers, overwrite=overwrite, resume=resume,
        jpeg_quality=jpeg_quality, progress=False if quiet else None))
    if summary.inputs and summary.outputs == 0:
        click.echo("  no face found: try --upsample 1 or a lower --min-score, or --model cnn", err=True)
