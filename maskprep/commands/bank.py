"""``maskprep build-templates``: a mask template bank cut from real photos, for ``synth-masks --templates``."""
from __future__ import annotations

from pathlib import Path

import click

from maskprep.cli import friendly_errors, run_and_report, runner_options


@click.command("build-templates")
@click.argument("input_dir", metavar="IN", type=click.Path(path_type=Path))
@click.argument("bank_dir", metavar="BANK", type=click.Path(path_type=Path))
@click.option("--source", "source_kind", type=click.Choice(["auto", "faces", "flat"]), default="auto",
              show_default=True,
              help="faces: photos of people wearing masks; flat: one mask per photo on a plain "
                   "background; auto: a photo with no face found is tried as a flat mask.")
@click.option("--assume-crop", is_flag=True,
              help="For tight crops of masked faces, which the detector often misses: fit the "
                   "landmarks in the usual face box of a crop (cuts that do not look like a mask "
                   "on a face are still rejected).")
@runner_options
@friendly_errors
def command(input_dir: Path, bank_dir: Path, source_kind: str, assume_crop: bool, workers: int,
            seed: int, overwrite: bool, resume: bool, quiet: bool) -> None:
    """Cut the masks out of real photos under IN into a template bank BANK.

    \b
    Per usable mask: BANK/<same folders>/<stem>__mask.png (RGBA, in the drawn templates' space)
    and <stem>__mask.json (anchors, fit, where it came from), e.g.
      maskprep build-templates real_masked/ bank/ --assume-crop
      maskprep synth-masks faces/ masked/ --templates bank/ --types random
    Faces whose landmarks do not look like a face, whose lower face is not told apart from the
    skin, or whose cut covers too little or leaks are skipped, with the reason in the manifest.
    """
    from maskprep.masks.bank import build_templates

    summary = run_and_report(lambda: build_templates(
        input_dir, bank_dir, source_kind=source_kind, assume_crop=assume_crop, seed=seed,
        workers=workers, overwrite=overwrite, resume=resume, progress=False if quiet else None))
    if summary.outputs:   # two files per template: its PNG and its JSON
        click.echo(f"  {summary.outputs // 2} template(s) in {bank_dir}")
    if summary.outputs == 0 and summary.inputs > 0:
        click.echo("  no template: no usable mask was found (see the reasons above)", err=True)
