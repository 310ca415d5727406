"""The ``maskprep`` command: one thin sub-command per stage over the library functions."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from maskprep import __version__
from maskprep.runner import RunError, Summary, default_workers


class InputError(click.ClickException):
    """A problem with the command's input (missing folder, output inside input): exit code 2."""

    exit_code = 2


def runner_options(func: Callable) -> Callable:
    """The options every tree-mapping stage shares, in one place."""
    options = [
        click.option("--workers", "-j", type=click.IntRange(min=0), default=0, show_default=False,
                     help=f"Worker processes (default: all cores, here {default_workers()})."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Base random seed; each file's seed derives from it and its relative path, "
                          "so results do not depend on --workers."),
        click.option("--overwrite", is_flag=True, help="Allow writing into a non-empty output folder, "
                                                       "replacing its files and manifest."),
        click.option("--resume", is_flag=True, help="Finish an interrupted run: skip inputs the "
                                                    "manifest already records as done."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_and_report(run: Callable[[], Summary]) -> Summary:
    """Run a stage, turning folder problems into a one-line error (exit 2) and printing the summary."""
    try:
        summary = run()
    except RunError as exc:
        raise InputError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted: finished files and the manifest are kept; re-run with --resume",
                   err=True)
        sys.exit(130)
    for line in summary.lines():
        click.echo(line)
    return summary


def friendly_errors(func: Callable) -> Callable:
    """Turn expected library errors into one clear line instead of a traceback."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from maskprep.resources import MissingResource
        try:
            return func(*args, **kwargs)
        except (MissingResource, ValueError) as exc:
            raise InputError(str(exc)) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="maskprep")
def cli() -> None:
    """Prepare face-mask image datasets: detect faces, synthesise masks, augment, audit.

    \b
    A typical pipeline:
      maskprep detect photos/ faces/            # aligned face crops + 68 landmarks
      maskprep synth-masks faces/ masked/       # masks worn right and wrong
      maskprep augment data/ augmented/ --flip --blur --color-jitter
      maskprep audit augmented/ --html audit.html
      maskprep-train augmented/                 # ResNet50 with an honest report

    Every stage writes a new tree (never into its input) and a manifest.jsonl that maps each output
    to its source, transform and seed. Run `maskprep COMMAND --help` for details.
    """


# Stage commands live in their own modules; each adds itself to the group here.
_COMMAND_MODULES = (
    "maskprep.commands.detect",
    "maskprep.commands.synth",
    "maskprep.commands.augment",
    "maskprep.commands.audit",
)


def _register_commands() -> None:
    import importlib
    for name in _COMMAND_MODULES:
        cli.add_command(importlib.import_module(name).command)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="maskprep")
