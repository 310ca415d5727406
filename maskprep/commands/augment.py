"""``maskprep augment``: flipped, blurred, colour-jittered and rotated copies into a new tree."""
from __future__ import annotations

from pathlib import Path

import click

from maskprep.cli import friendly_errors, run_and_report, runner_options

# AugmentSettings()'s defaults, copied so that building the command (``maskprep --help``) does not
# import OpenCV; a test in tests/test_augment.py keeps them equal.
DEFAULT_BLUR_SIGMA = (0.6, 1.6)
DEFAULT_BRIGHTNESS = 0.2
DEFAULT_CONTRAST = 0.2
DEFAULT_SATURATION = 0.3
DEFAULT_HUE = 0.03


@click.command("augment")
@click.argument("input_dir", metavar="IN", type=click.Path(file_okay=False, path_type=Path))
@click.argument("output_dir", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
@click.option("--flip", is_flag=True, help="Add <stem>__flip: the left-right mirror image (exact).")
@click.option("--blur", is_flag=True,
              help="Add <stem>__blur: a Gaussian blur, sigma drawn from --blur-sigma.")
@click.option("--color-jitter", is_flag=True,
              help="Add <stem>__jitter: brightness, contrast, saturation and hue drawn from "
                   "--brightness/--contrast/--saturation/--hue.")
@click.option("--rotate", type=click.FloatRange(0, 180, min_open=True), default=None, metavar="DEG",
              help="Add <stem>__rotate: a rotation drawn from -DEG..+DEG degrees, borders mirrored.")
@click.option("--copies", type=click.IntRange(0, 100), default=0, show_default=True, metavar="N",
              help="Add N files <stem>__aug1..augN, each a random combination (every op with "
                   "probability 1/2) of the chosen variants, or of flip+blur+jitter when none is chosen.")
@click.option("--splits", default=None, metavar="LIST",
              help="Splits to augment, comma-separated (train, val, test, or all). Default: train only "
                   "when the input has split folders (train/, val/ or valid/, test/ at any level); "
                   "the others are copied byte for byte. Overriding it prints a warning.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=95, show_default=True, metavar="Q",
              help="Quality of the JPEG variants (PNG stays PNG, lossless). Originals are never re-encoded.")
@click.option("--blur-sigma", type=(float, float), default=DEFAULT_BLUR_SIGMA, show_default=True,
              metavar="LOW HIGH",
              help="Blur sigma range in pixels at a 224-px shorter side; scaled up for larger images.")
@click.option("--brightness", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_BRIGHTNESS,
              show_default=True, help="Jitter: brightness factor drawn from 1 +- this.")
@click.option("--contrast", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_CONTRAST,
              show_default=True, help="Jitter: contrast factor drawn from 1 +- this.")
@click.option("--saturation", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_SATURATION,
              show_default=True, help="Jitter: saturation factor drawn from 1 +- this.")
@click.option("--hue", type=click.FloatRange(0, 0.5), default=DEFAULT_HUE, show_default=True,
              help="Jitter: hue shift drawn from +- this many turns (0.03 = 10.8 degrees).")
@runner_options
@friendly_errors
def command(input_dir: Path, output_dir: Path, flip: bool, blur: bool, color_jitter: bool,
            rotate: float | None, copies: int, splits: str | None, jpeg_quality: int,
            blur_sigma: tuple[float, float], brightness: float, contrast: float, saturation: float,
            hue: float, workers: int, seed: int, overwrite: bool, resume: bool, quiet: bool) -> None:
    """Write IN's images to OUT with augmented variants beside each original.

    OUT mirrors IN. Every image is copied byte for byte (never re-encoded), and each chosen variant
    is written next to it as <stem>__<variant>.<ext> in the same format. Only the training split is
    augmented: when IN has train/, val/ (valid/, validation/) or test/ folders, files in val and test
    are copied unchanged, so no variant of an evaluation photo can leak into training. Unreadable
    files are recorded in OUT/manifest.jsonl with a reason and skipped; every output's record holds
    its source, variant and the exact parameters drawn. The same --seed gives byte-identical files
    whatever --workers is.

    \b
    Examples:
      maskprep augment data/ augmented/ --flip --blur
      maskprep augment data/ augmented/ --flip --blur --color-jitter --rotate 10 --copies 2 --seed 7

    Cost: one decode per image and one encode per variant (most of the time); about as fast as
    re-encoding the images, on all cores.
    """
    from maskprep.augment import AugmentSettings, augment_tree

    # --rotate goes to augment_tree alone: it both turns the variant on and sets settings.rotate.
    settings = AugmentSettings(blur_sigma=tuple(blur_sigma), brightness=brightness, contrast=contrast,
                               saturation=saturation, hue=hue)
    result = None

    def run():
        nonlocal result
        result = augment_tree(input_dir, output_dir, flip=flip, blur=blur, color_jitter=color_jitter,
                              rotate=rotate or 0.0, copies=copies, splits=splits, settings=settings,
                              seed=seed, workers=workers, jpeg_quality=jpeg_quality, overwrite=overwrite,
                              resume=resume, progress=not quiet,
                              on_warning=lambda line: click.echo(line, err=True))
        return result.summary

    run_and_report(run)
    if result is not None:
        for line in result.lines()[len(result.summary.lines()):]:
            click.echo(line)
