"""The ``maskprep`` command: one thin sub-command per stage over the library functions."""
from __future__ import annotations

import functools
import importlib
import sys
from typing import TYPE_CHECKING, Any, Callable

import click

from maskprep import __version__

if TYPE_CHECKING:
    from maskprep.runner import Summary


class InputError(click.ClickException):
    """A problem with the command's input (missing folder, output inside input): exit code 2."""

    exit_code = 2


def runner_options(func: Callable) -> Callable:
    """The options every tree-mapping stage shares, in one place."""
    from maskprep.runner import default_workers
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
    return engine_options(func)


def engine_options(func: Callable) -> Callable:
    """``--engine``, ``--ray-address``, ``--batch-size``: where the per-file work runs.

    They are kept in the click context (not passed to the command), and :func:`engine_spec` reads
    them back, so a stage command needs no parameter of its own for them."""
    from maskprep.engines import DEFAULT_BATCH_SIZE, ENGINES, RAY_INSTALL, EngineUnavailable, require_ray

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if param.name == "engine" and value == "ray":
            try:
                require_ray()  # fail before any work, with the install command
            except EngineUnavailable as exc:
                raise InputError(str(exc)) from None
        ctx.meta.setdefault(_ENGINE_META, {})[param.name] = value
        return value

    options = [
        click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                     expose_value=False, callback=store,
                     help="local: processes on this machine. ray: Ray Data actors (models loaded once "
                          "per actor) on a Ray started in this process, or on the cluster at "
                          f"--ray-address; needs {RAY_INSTALL}. Same output bytes either way; "
                          "with ray, --workers is the number of actors (default: every CPU)."),
        click.option("--ray-address", metavar="HOST:PORT", default=None, expose_value=False,
                     callback=store,
                     help="Join this Ray cluster (started with 'ray start --head'; default: "
                          "RAY_ADDRESS when set). IN and OUT must be on a file system every node sees."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE,
                     show_default=True, expose_value=False, callback=store,
                     help="With --engine ray: files per Ray Data batch."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_ENGINE_META = "maskprep.engine"


def engine_spec(ctx: click.Context | None = None) -> Any:
    """The :class:`maskprep.engines.EngineSpec` that the command's engine options ask for."""
    from maskprep.engines import EngineSpec
    ctx = ctx or click.get_current_context(silent=True)
    chosen = dict(ctx.meta.get(_ENGINE_META, {})) if ctx is not None else {}
    name = chosen.get("engine") or "local"
    workers = ctx.params.get("workers") if ctx is not None else None
    try:
        return EngineSpec(name=name, address=chosen.get("ray_address"),
                          batch_size=chosen.get("batch_size") or EngineSpec.batch_size,
                          concurrency=(workers or None) if name == "ray" else None)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def run_and_report(run: Callable[[], Summary]) -> Summary:
    """Run a stage, turning folder problems into a one-line error (exit 2) and printing the summary."""
    from maskprep.engines import EngineUnavailable, use_engine
    from maskprep.runner import RunError
    try:
        with use_engine(engine_spec()):
            summary = run()
    except (RunError, EngineUnavailable) as exc:
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
        from maskprep.engines import EngineUnavailable
        from maskprep.resources import MissingResource
        try:
            return func(*args, **kwargs)
        except (MissingResource, EngineUnavailable, ValueError) as exc:
            raise InputError(str(exc)) from None
    return wrapper


# Stage commands live in their own modules, imported only when a command is run or its help shown,
# so that ``import maskprep.cli`` and ``maskprep --help`` load no image library. Name -> (module,
# the command's one-line summary for ``maskprep --help``; a test keeps it equal to the docstring's).
_COMMANDS = {
    "detect": ("maskprep.commands.detect",
               "Find faces in the photos under IN; write one aligned crop per face to OUT."),
    "synth-masks": ("maskprep.commands.synth",
                    "Mask every face in the photos under IN; write a mirrored tree to OUT."),
    "dataset": ("maskprep.commands.dataset",
                "Split labelled face images into OUT/train, OUT/val and OUT/test without leaking a photo."),
    "augment": ("maskprep.commands.augment",
                "Write IN's images to OUT with augmented variants beside each original."),
    "build-templates": ("maskprep.commands.bank",
                        "Cut the masks out of real photos under IN into a template bank BANK."),
    "audit": ("maskprep.commands.audit",
              "Audit DATA: class balance, bad files, duplicates, train/val/test leakage."),
}


class _StageGroup(click.Group):
    """A group whose stage commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            self.add_command(importlib.import_module(_COMMANDS[cmd_name][0]).command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, but from the summaries above, without importing the commands."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.commands:
                if self.commands[name].hidden:
                    continue
                text = self.commands[name].get_short_help_str(limit)
            else:
                text = click.utils.make_default_short_help(_COMMANDS[name][1], limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_StageGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="maskprep")
def cli() -> None:
    """Prepare face-mask image datasets: detect faces, synthesise masks, augment, audit.

    \b
    A typical pipeline:
      maskprep detect photos/ faces/            # aligned face crops + 68 landmarks
      maskprep synth-masks faces/ masked/       # masks worn right and wrong
      maskprep dataset faces/ masked/ data/     # labelled train/val/test, no photo on two sides
      maskprep augment data/ augmented/ --flip --blur --color-jitter
      maskprep audit augmented/ --html audit.html
      maskprep-train augmented/                 # ResNet50 with an honest report

    Every stage writes a new tree (never into its input) and a manifest.jsonl that maps each output
    to its source, transform and seed. Run `maskprep COMMAND --help` for details.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="maskprep")
