"""``maskprep-train``: train (the default command), ``evaluate`` and ``predict``.

``maskprep-train DATA ...`` trains: the group treats a first argument that is not a sub-command name
as ``train``'s DATA, so the short form in the README works next to ``maskprep-train evaluate ...``.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import click

from maskprep_train.data import AUGMENTATIONS
from maskprep_train.model import ARCHS, FREEZE_MODES


class InputError(click.ClickException):
    """A problem with the command's input or options: one line, exit code 2."""

    exit_code = 2


def friendly(func: Callable) -> Callable:
    """Expected problems (missing folder, weights not cached, bad checkpoint) as one line, not a traceback."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError) as exc:
            raise InputError(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted: best.pt in --out holds the best epoch so far (no report written)",
                       err=True)
            sys.exit(130)
    return wrapper


class DefaultGroup(click.Group):
    """A group that runs ``default_command`` when the first argument is not one of its commands."""

    default_command = "train"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.version_option(package_name="maskprep", prog_name="maskprep-train")
def cli() -> None:
    """Fine-tune a ResNet on a face-mask dataset and report honestly how well it generalises.

    \b
      maskprep-train DATA [OPTIONS]            train (same as `maskprep-train train DATA`)
      maskprep-train evaluate CKPT DATA        metrics of a saved model on labelled photos
      maskprep-train predict CKPT IMAGES...    class and confidence per photo

    DATA holds class folders (with_mask/, without_mask/, ...) or train/ val/ test/ folders with
    class folders inside. Run `maskprep-train train --help` for the training options.
    """


@cli.command("train")
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Report folder (metrics.json, best.pt, curves.png, roc.png, verdict.txt). "
                   "Default: runs/<DATA name>-<date-time>.")
@click.option("--test", "test_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A held-out folder of class folders, ideally photos from another source: the only "
                   "honest estimate of generalisation. Replaces a test/ split inside DATA.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=float, default=None,
              help="Learning rate. Default 1e-3 with --freeze head, 3e-4 otherwise (x30 for SGD).")
@click.option("--img-size", type=click.IntRange(min=32), default=224, show_default=True,
              help="Square input size. 128 trains about 3x faster than 224 on CPU.")
@click.option("--arch", type=click.Choice(ARCHS), default="resnet50", show_default=True,
              help="Backbone; resnet18/34 are 2-4x faster, same code path.")
@click.option("--freeze", type=click.Choice(FREEZE_MODES), default="layer4", show_default=True,
              help="head: train only the new classifier (fast; with --augment none it trains on cached "
                   "features). layer4: also the last residual stage. none: the whole network.")
@click.option("--weights", default="imagenet", show_default=True,
              help="Starting weights: imagenet (torchvision's weights API: from the torch hub cache, "
                   "downloaded into it on first use; offline, a clear error with the path to put the "
                   "file at), none (random; use with --freeze none), or a PATH to a local state_dict.")
@click.option("--augment", type=click.Choice(AUGMENTATIONS), default="light", show_default=True,
              help="Train-time augmentation: none, flip (horizontal), light (flip, 85-100% crop, "
                   "+-15% brightness/contrast).")
@click.option("--optimizer", type=click.Choice(("adamw", "sgd")), default="adamw", show_default=True)
@click.option("--schedule", type=click.Choice(("cosine", "plateau", "none")), default="cosine",
              show_default=True, help="Learning-rate schedule over the epochs.")
@click.option("--device", type=click.Choice(("auto", "cuda", "cpu")), default="auto", show_default=True,
              help="auto takes a CUDA GPU when one is visible.")
@click.option("--amp/--no-amp", default=True, show_default=True,
              help="Mixed precision on CUDA (bf16 where supported, else fp16). No effect on CPU.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.15,
              show_default=True, help="Share of photos held out for validation when DATA has no val/ "
                                      "split; copies of one source photo always stay together.")
@click.option("--class-weights", type=click.Choice(("auto", "none")), default="auto", show_default=True,
              help="auto: weight the loss by inverse class frequency when classes are imbalanced (>1.2x).")
@click.option("--patience", type=click.IntRange(min=0), default=5, show_default=True,
              help="Stop after this many epochs without a val macro-F1 gain (0: never stop early).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for the split, initialisation, shuffling and augmentation.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Image-decoding processes per training process (default: 0 on 2-core machines).")
@click.option("--overwrite", is_flag=True, help="Replace the report in an existing --out folder.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final report.")
@friendly
def train_command(data: str, out: str | None, test_dir: str | None, quiet: bool, **options: Any) -> None:
    """Train on DATA, keep the epoch with the best validation macro-F1, and write the report.

    Every epoch is logged; the final report evaluates the best checkpoint on train, val and test
    and prints a gap verdict (overfitting, leakage or domain shift) in plain words. Under
    `torchrun --nproc-per-node N -m maskprep_train DATA` it trains with DDP; only rank 0 writes.
    """
    from maskprep_train.distributed import dist_info_from_env
    from maskprep_train.engine import TrainConfig, fit

    main_rank = dist_info_from_env().is_main
    log = (lambda s: click.echo(s)) if main_rank else (lambda s: None)
    cfg = TrainConfig(data=data, out=out, test=test_dir, log=log, **options)
    if quiet:
        cfg.log = lambda s: None
    result = fit(cfg)
    if quiet and main_rank:
        click.echo("\n".join(result["verdict"]["lines"]))


@cli.command("evaluate")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", type=click.Choice(("auto", "cuda", "cpu")), default="auto", show_default=True)
@friendly
def evaluate_command(checkpoint: str, data: str, as_json: bool, batch_size: int, device: str) -> None:
    """Accuracy, macro-F1, ROC-AUC and the confusion matrix of CHECKPOINT (a best.pt) on DATA's class folders."""
    from maskprep_train.engine import evaluate
    m = evaluate(checkpoint, data, batch_size=batch_size, device=device)
    if as_json:
        click.echo(json.dumps(m, indent=1))
        return
    from maskprep_train.report import fmt_metric
    click.echo(f"n={m['n']}  accuracy {fmt_metric(m['accuracy'], 4)}  macro-F1 {fmt_metric(m['macro_f1'], 4)}"
               f"  ROC-AUC {fmt_metric(m['roc_auc'], 4)}"
               + (f"  ({m['unreadable']} unreadable files skipped)" if m["unreadable"] else ""))
    width = max(len(c) for c in m["classes"])
    click.echo("confusion matrix (rows: true, columns: predicted)")
    click.echo(" " * (width + 2) + "  ".join(f"{c:>{width}s}" for c in m["classes"]))
    for c, row in zip(m["classes"], m["confusion_matrix"]):
        click.echo(f"{c:>{width}s}  " + "  ".join(f"{v:{width}d}" for v in row))


@cli.command("predict")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--detect", is_flag=True,
              help="Find the faces first and predict per face, on crops made as `maskprep detect` makes "
                   "them (for whole photos; the model was trained on face crops).")
@click.option("--json", "as_json", is_flag=True, help="One JSON list with class, confidence and all probabilities.")
@click.option("--device", type=click.Choice(("auto", "cuda", "cpu")), default="auto", show_default=True)
@friendly
def predict_command(checkpoint: str, images: tuple[str, ...], detect: bool, as_json: bool, device: str) -> None:
    """Class and confidence for each of IMAGES (files, or folders searched for images).

    The model was trained on face crops: a whole photo gets a warning (use --detect, which crops
    each face and predicts per face).
    """
    from pathlib import Path

    from maskprep.images import list_images
    from maskprep_train.engine import predict
    paths: list[str] = []
    for item in images:
        if Path(item).is_dir():
            paths.extend(str(x) for x in list_images(item))
        else:
            paths.append(item)
    results = predict(checkpoint, paths, device=device, detect=detect)
    if as_json:
        click.echo(json.dumps(results, indent=1))
    else:
        for r in results:
            where = r["path"] + (f"#face{r['face']}" if "face" in r else "")
            if "error" in r:
                click.echo(f"{where}\tERROR {r['error']}")
            else:
                click.echo(f"{where}\t{r['class']}\t{r['confidence']:.3f}"
                           + (f"\twarning: {r['warning']}" if "warning" in r else ""))
    photos = [r for r in results if "warning" in r]
    if photos:
        click.echo(f"warning: {len(photos)} of {len(paths)} input(s) do not look like the face crops the "
                   "model was trained on (e.g. " + photos[0]["warning"].split(": ", 1)[1] + " in "
                   f"{photos[0]['path']}); their classes are unreliable. Run again with --detect to crop "
                   "the faces first and predict per face.", err=True)
    # Exit 1 when a file could not be read, so scripts notice; the other results are still printed.
    if any("error" in r and r["error"] != "no face" for r in results):
        sys.exit(1)


def main() -> None:
    """Console-script entry point."""
    # Set before torch loads OpenMP: idle worker threads sleep instead of spinning. On a shared or
    # small CPU, spinning threads fight each other (measured 7x slower steps on a busy 2-core box);
    # on a dedicated machine the cost is a few percent. An explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cli(prog_name="maskprep-train")
