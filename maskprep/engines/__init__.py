"""Where a stage's per-file function runs: ``local`` (the runner's process pool) or ``ray`` (Ray Data).

The per-file functions, their seeds and the manifest records are the same whichever engine runs
them, so outputs are byte-identical; an engine only decides *where* the function is called. The
engine is chosen for a block of code, the way a scheduler is chosen in dask::

    with use_engine(EngineSpec("ray", address="10.0.0.5:6379")):
        synth_masks("faces/", "masked/")

so every stage function keeps its signature and its defaults (``local``). The CLI's ``--engine``,
``--ray-address`` and ``--batch-size`` options set it for one command.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

ENGINES = ("local", "ray")
RAY_INSTALL = "pip install 'maskprep[ray]'"
DEFAULT_BATCH_SIZE = 4


class EngineUnavailable(Exception):
    """The chosen engine cannot run here (e.g. Ray is not installed): a problem with the command."""


@dataclass(frozen=True)
class EngineSpec:
    """Which engine runs the per-file work, and how.

    ``address``: a Ray cluster (``host:port`` of ``ray start --head``); ``None`` uses ``RAY_ADDRESS``
    when set, else starts Ray inside this process. ``batch_size``: files per Ray Data batch.
    ``concurrency``: Ray actors (each loads the models once and holds one CPU); ``None`` takes the
    stage's ``workers`` (in-process Ray) or every CPU of the cluster.
    """

    name: str = "local"
    address: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(f"unknown engine {self.name!r}: choose from {', '.join(ENGINES)}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.address and self.name != "ray":
            raise ValueError("--ray-address needs --engine ray")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``run.json``."""
        return asdict(self)


LOCAL = EngineSpec()
_CURRENT: contextvars.ContextVar[EngineSpec] = contextvars.ContextVar("maskprep_engine", default=LOCAL)


def current_engine() -> EngineSpec:
    """The engine the next stage run will use (``local`` unless inside :func:`use_engine`)."""
    return _CURRENT.get()


@contextlib.contextmanager
def use_engine(spec: EngineSpec | str) -> Iterator[EngineSpec]:
    """Run the stages called inside this block on ``spec`` (an :class:`EngineSpec` or its name).

    Fails at once with :class:`EngineUnavailable` when the engine cannot run here."""
    if isinstance(spec, str):
        spec = EngineSpec(spec)
    if spec.name == "ray":
        require_ray()
        check_reachable(spec.address or os.environ.get("RAY_ADDRESS") or "")
    token = _CURRENT.set(spec)
    try:
        yield spec
    finally:
        _CURRENT.reset(token)


def require_ray() -> None:
    """Raise :class:`EngineUnavailable` with the exact install command when Ray Data is missing."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineUnavailable(f"--engine ray needs Ray, which is not installed here: "
                                f"{RAY_INSTALL}") from None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise :class:`EngineUnavailable` when nothing listens at a ``host:port`` cluster address.

    ``ray.init`` would retry an unreachable address for minutes; a refused connection is known at once.
    Other forms (``auto``, ``ray://...``, empty) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host or "/" in host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise EngineUnavailable(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
                                "(is 'ray start --head' running there, on that port?)") from None


def map_ordered(spec: EngineSpec, fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                init: Callable[..., None] | None = None, initargs: tuple = ()) -> "EngineMap":
    """``fn`` over ``items`` on a non-local engine: an iterator of results in ``items``' order.

    ``init(*initargs)`` runs once in each worker before its first item (the pool initializer of the
    local engine). The returned object also reports, once exhausted, how much work each node did.
    """
    if spec.name == "ray":
        from maskprep.engines.ray_engine import RayMap
        return RayMap(spec, fn, items, workers, init, initargs)
    raise ValueError(f"map_ordered is for non-local engines, not {spec.name!r}")


class EngineMap:
    """What :func:`map_ordered` returns: iterate for results; ``info()`` for ``run.json``."""

    def __iter__(self) -> Iterator[Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def info(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Stop the work still in flight (after Ctrl-C)."""
