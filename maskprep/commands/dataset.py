"""``maskprep dataset``: a labelled, leak-free train/val/test tree from face crops and masked faces."""
from __future__ import annotations

from pathlib import Path

import click

from maskprep.cli import InputError


@click.command("dataset")
@click.argument("paths", metavar="IN... OUT", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--class-map", default=None, metavar="KEY=CLASS,...",
              help="Classes by what was done to each face, over the defaults unmasked=without_mask, "
                   "correct=with_mask, nose-out=mask_worn_wrong, chin=mask_worn_wrong. Keys are also "
                   "the class folders of inputs without a manifest (e.g. masked=with_mask); CLASS '-' "
                   "leaves those images out.")
@click.option("--ratios", default="0.7,0.15,0.15", show_default=True, metavar="TRAIN,VAL[,TEST]",
              help="Shares of images per split (or train=0.8,val=0.2). Met as closely as whole groups "
                   "allow; the report says so when they cannot be.")
@click.option("--group-by", type=click.Choice(("origin", "identity")), default="origin", show_default=True,
              help="origin: every copy of one source photo stays in one split (from the manifests, and "
                   "from the pixels: exact, near and masked copies, as the audit finds them). identity: "
                   "also every photo of one person, judged on the unmasked images (dlib face "
                   "descriptors; about 1 s per unmasked image; a mask hides what they need).")
@click.option("--test-from", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Class folders from another source to be the test split; IN then fills "
                                  "train and val only (the honest measure of generalisation).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the split; the same seed gives the same split whatever --workers is.")
@click.option("--workers", "-j", type=click.IntRange(min=0), default=0,
              help="Processes for reading the images (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier `maskprep dataset` output in OUT.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(paths: tuple[Path, ...], class_map: str | None, ratios: str, group_by: str,
            test_from: Path | None, seed: int, workers: int, overwrite: bool, quiet: bool) -> None:
    """Split labelled face images into OUT/train, OUT/val and OUT/test without leaking a photo.

    IN are outputs of earlier stages (detect crops, synth-masks outputs, each with its
    manifest.jsonl) or folders of class folders. Each image gets a class from what its manifest
    records (a detect crop is unmasked; a synthetic mask has its wear mode), or from its class
    folder, through --class-map. Copies of one source photo form a group that never straddles two
    splits; the split is stratified by class. OUT gets <split>/<class>/ folders (what augment, audit
    and maskprep-train read), manifest.jsonl (every file's origin, class and group, and every left
    out input with its reason), run.json and split_report.json (the shares asked and got).

    \b
    Examples:
      maskprep dataset faces/ masked/ data/
      maskprep dataset faces/ masked/ data/ --group-by identity --ratios 0.8,0.2 --test-from real/

    Cost: one read of every image (hashes for the copy search), then a byte copy.
    """
    from maskprep.assemble import DatasetError, build_dataset, parse_class_map, parse_ratios

    if len(paths) < 2:
        raise InputError("give at least one input folder and the output folder: maskprep dataset IN... OUT")
    try:
        result = build_dataset(list(paths[:-1]), paths[-1], class_map=parse_class_map(class_map),
                               ratios=parse_ratios(ratios), group_by=group_by, test_from=test_from,
                               seed=seed, workers=workers, overwrite=overwrite, progress=not quiet,
                               say=click.echo)
    except DatasetError as exc:
        raise InputError(str(exc)) from None
    for line in result.lines():
        click.echo(line)
