"""``maskprep synth-masks``: put realistic masks, worn right and worn wrong, on unmasked photos."""
from __future__ import annotations

from pathlib import Path

import click

from maskprep.cli import InputError, friendly_errors, run_and_report, runner_options
from maskprep.masks.fit import DEFAULT_MAX_YAW, DEFAULT_MIN_FACE
from maskprep.masks.templates import COLORS, MASK_TYPES, PATTERNS


@click.command("synth-masks")
@click.argument("input_dir", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_dir", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--types", "types", default=None, metavar="LIST",
              help=f"Mask types: a comma list of {', '.join(MASK_TYPES)} (and bank, with "
                   "--templates); 'all' (one output per type) or 'random' (one type drawn per "
                   "output). Default: surgical; bank with --templates.")
@click.option("--templates", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="BANK",
              help="A template bank written by 'maskprep build-templates' (real masks cut from "
                   "photos): adds the type 'bank', one of its masks drawn per output, in its own "
                   "colours; --types random then draws it as one more type, --types bank,kf94 gives one of each. The manifest "
                   "records which template each output used.")
@click.option("--wear", default="correct", show_default=True, metavar="MODE",
              help="How the mask is worn: correct (over the nose), nose-out (under the nose), "
                   "chin (pulled down under the lower lip); a comma list; 'all' (one output per "
                   "mode) or 'mix' (one mode drawn per output).")
@click.option("--per-image", type=click.IntRange(min=1), default=1, show_default=True,
              help="Outputs per (type, wear) choice for each photo; with random/mix each draws anew. "
                   "Cost grows linearly; detection runs once per photo.")
@click.option("--color", default="natural", show_default=True,
              help="natural (each mask's own colour: light-blue surgical, white KF94, charcoal "
                   f"cloth, off-white N95), random (natural 30% of the time, else drawn from the "
                   f"colours of real masks measured in photos, mostly black, white and light blue), "
                   f"#rrggbb, or one of: {', '.join(COLORS)}.")
@click.option("--pattern", type=click.Choice([*PATTERNS, "random"]), default="none", show_default=True,
              help="A printed pattern over the colour (random: plain 80% of the time).")
@click.option("--save-alpha", is_flag=True,
              help=f"Also write each output's mask coverage (0-255 PNG, a segmentation label) "
                   f"under OUT/.alpha/ mirroring the outputs (a hidden folder, so later stages "
                   f"do not take the labels for photos).")
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a contact sheet (PNG) of originals beside their masked versions, "
                   "for a person to look at. Not inside IN or OUT; an existing file needs --overwrite.")
@click.option("--preview-count", type=click.IntRange(min=1), default=12, show_default=True,
              help="How many photos the contact sheet shows.")
@click.option("--min-face", type=float, default=DEFAULT_MIN_FACE, show_default=True,
              help="Skip faces narrower than this (px, jaw to jaw): no sane fit below it.")
@click.option("--max-yaw", type=float, default=DEFAULT_MAX_YAW, show_default=True,
              help="Skip faces turned further than this (0 frontal, 1 profile).")
@click.option("--realism", type=click.FloatRange(0, 2), default=1.0, show_default=True,
              help="Strength of the photo matching (grain and softness like the photo); 0 = clean.")
@click.option("--max-side", type=click.IntRange(min=0), default=None,
              help="Search for faces on a copy at most this many px on its longer side "
                   "(default: the detect stage's, 1280; 0 = full size). Smaller is faster but "
                   "misses small faces in big photos.")
@click.option("--assume-crop", is_flag=True,
              help="Tight face crops are recognised without this flag (a confident crop fit, "
                   "or dlib's CNN as a second opinion). With it, a crop whose fit is only "
                   "plausible is masked too (landmarks that look like a face, skin-coloured "
                   "cheeks and nose). Recorded as assumed_crop in the manifest. Not for scene "
                   "photos or mixed folders.")
@click.option("--landmarks-from", default="auto", show_default=True, metavar="auto|detector|PATH",
              help="Where the faces come from. auto: when IN was written by 'maskprep detect', "
                   "each aligned crop reuses the landmarks detect fitted on the full photo (no "
                   "second search: several times faster, and crops the detector would miss are "
                   "masked too); other inputs are searched. detector: always search. PATH: the "
                   "manifest (or output folder) of a 'maskprep detect' run over the photos in IN: "
                   "each photo it lists gets its recorded faces, unlisted photos are searched.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="Quality of JPEG outputs.")
@runner_options
@friendly_errors
def command(input_dir: Path, output_dir: Path, types: str | None, templates: Path | None, wear: str, per_image: int, color: str,
            pattern: str, save_alpha: bool, preview: Path | None, preview_count: int, min_face: float,
            max_yaw: float, realism: float, max_side: int | None, assume_crop: bool,
            landmarks_from: str, jpeg_quality: int, workers: int, seed: int,
            overwrite: bool, resume: bool, quiet: bool) -> None:
    """Mask every face in the photos under IN; write a mirrored tree to OUT.

    \b
    One file per (photo, variant): OUT/<same folders>/<stem>__<type>_<wear>.<ext>, e.g.
      maskprep synth-masks faces/ masked/ --types all --wear mix --preview sheet.png
    Faces are found with dlib (HOG), or taken from a 'maskprep detect' manifest (see
    --landmarks-from); every face above the detector threshold gets the mask;
    faces too small or too turned are left as they are and recorded with the reason. The
    manifest records per output the mask type, wear mode, colour, each face's landmarks and the
    mask polygon. The same --seed gives byte-identical outputs whatever --workers is.
    """
    from maskprep.masks.synth import synth_masks

    if preview is not None:   # refuse an unwritable sheet name before the run, not after it
        from maskprep.images import save_format
        from maskprep.outpaths import check_report_path
        try:
            save_format(preview)
        except ValueError as exc:
            raise InputError(f"--preview {preview}: {exc} (use .png or .jpg)") from None
        # Not inside IN or OUT (the sheet would be taken for a photo); a resumed run redraws its own.
        check_report_path(preview, "--preview", reads=[input_dir, output_dir], replace=overwrite or resume)
    summary = run_and_report(lambda: synth_masks(
        input_dir, output_dir, types=types, wear=wear, per_image=per_image, color=color,
        pattern=pattern, save_alpha=save_alpha, min_face=min_face, max_yaw=max_yaw,
        realism=realism, max_side=max_side, assume_crop=assume_crop, landmarks_from=landmarks_from,
        templates=templates, seed=seed, workers=workers, overwrite=overwrite, resume=resume, jpeg_quality=jpeg_quality,
        progress=False if quiet else None))
    if preview is not None:
        from maskprep.masks.preview import preview_sheet
        try:
            count = preview_sheet(input_dir, output_dir, preview, limit=preview_count)
        except OSError as exc:
            raise InputError(f"cannot write preview {preview}: {exc}") from None
        click.echo(f"  preview: {preview} ({count} photo(s))")
    if summary.outputs == 0 and summary.inputs > 0:
        click.echo("  no output: no usable face was found (see the reasons above)", err=True)
