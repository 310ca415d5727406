"""The ``ray`` engine: a stage's per-file function over Ray Data, on this machine or a cluster.

The jobs become a Ray dataset; ``map_batches`` runs them on a fixed pool of actors, each of which
runs the stage's worker set-up once (so the dlib models, cached per process, load once per actor)
and then calls the same per-file function the local pool calls. Results stream back to the driver
in job order (``preserve_order``), where the runner writes the manifest as they arrive: the driver
never holds more than a few batches.

Connecting: an explicit address or ``RAY_ADDRESS`` joins a cluster started with ``ray start``;
otherwise Ray starts inside this process with ``workers`` CPUs. A Ray that is already connected (a
notebook, a test fixture) is reused as it is.
"""
from __future__ import annotations

import logging
import math
import os
import pickle
from collections import Counter
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from maskprep.engines import EngineMap, EngineSpec, EngineUnavailable, require_ray

# Blocks are the unit an actor task takes; a cap keeps the driver's bookkeeping small on huge trees
# while leaving many more blocks than actors for load balance.
MAX_BLOCKS = 20_000
_LOOPBACK = ("127.", "localhost", "::1")


def _quiet_ray_data() -> None:
    """Ray Data settings for a maskprep run (in this process's current DataContext): results in job
    order, and no progress bars or execution logs of its own (maskprep has its progress bar)."""
    import ray.data
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the manifest is written in job order
    ctx.enable_progress_bars = False
    # Start work only once every actor is up: the pool's size is fixed, so none is waited for in vain,
    # and the first actor up does not take a head start over the others.
    ctx.wait_for_min_actors_s = 600
    ctx.enable_auto_log_stats = False
    # Ray Data warns that its bars are off and that its own settings are deprecated: not the user's news.
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _init_on_loopback(ray: Any, num_cpus: int, kwargs: dict[str, Any]) -> None:
    """Start a private Ray whose processes listen on 127.0.0.1 only.

    ``ray.init`` turns a 127.0.0.1 node address into the machine's network address (so that other
    nodes could reach it); a private Ray has no other nodes, and its traffic must stay on loopback,
    so that one conversion is suspended while this process starts it."""
    from ray._private import services
    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", **kwargs)
    finally:
        services.resolve_ip_for_localhost = resolve


def connect(address: str | None, num_cpus: int) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start Ray in this process.

    Usage statistics are off (nothing leaves the machine). A cluster whose nodes run on loopback
    (``ray start --node-ip-address 127.0.0.1``) is joined with that node address too."""
    require_ray()
    import ray
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:  # a private Ray of this process: no other client can join it, so no token needed
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address:
            if address.startswith(_LOOPBACK):
                kwargs["_node_ip_address"] = "127.0.0.1"
            ray.init(address=address, **kwargs)
        else:
            _init_on_loopback(ray, num_cpus, kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "an in-process Ray"
        raise EngineUnavailable(f"cannot start {where}: {str(exc).splitlines()[0][:300]}") from None


class _Worker:
    """One actor of the pool: set up once, then the per-file function on every item of a batch."""

    def __init__(self, fn: Callable[[Any], Any], init: Callable[..., None] | None, initargs: tuple):
        import ray
        try:
            import cv2
            cv2.setNumThreads(1)  # one file per actor CPU; OpenCV's own threads would fight the pool
        except ImportError:  # pragma: no cover
            pass
        if init is not None:
            init(*initargs)
        self.fn = fn
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [pickle.dumps(self.fn(pickle.loads(item)), protocol=pickle.HIGHEST_PROTOCOL)
               for item in batch["item"]]
        result = np.empty(len(out), dtype=object)
        result[:] = out
        return {"result": result, "node": np.array([self.node] * len(out))}


class RayMap(EngineMap):
    """``fn`` over ``items`` on Ray Data, results in order; ``info()`` says which node did how many."""

    def __init__(self, spec: EngineSpec, fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                 init: Callable[..., None] | None = None, initargs: tuple = ()):
        connect(spec.address, num_cpus=spec.concurrency or workers)
        import ray
        self.spec = spec
        self.nodes: Counter = Counter()
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        # An actor holds one CPU: more actors than the cluster's CPUs would wait for ever.
        self.concurrency = max(1, min(spec.concurrency or cpus, cpus, len(items) or 1))
        self._items = items
        self._fn, self._init, self._initargs = fn, init, initargs
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def __iter__(self) -> Iterator[Any]:
        if not self._items:
            return
        import ray.data
        _quiet_ray_data()
        rows = [{"item": pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)} for item in self._items]
        blocks = max(1, min(MAX_BLOCKS, math.ceil(len(rows) / self.spec.batch_size)))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        del rows
        # Ray logs once per actor that its constructor arguments live in the object store; restarts
        # (a node lost mid-run) are worth more than that line, so max_restarts stays at Ray's default.
        ds = ds.map_batches(_Worker, fn_constructor_args=(self._fn, self._init, self._initargs),
                            batch_size=self.spec.batch_size, num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=self.concurrency),
                            batch_format="numpy", zero_copy_batch=True)
        self._iter = iter(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1))
        for batch in self._iter:
            for payload, node in zip(batch["result"], batch["node"]):
                self.nodes[str(node)] += 1
                yield pickle.loads(payload)

    def close(self) -> None:
        """Stop the pipeline (its actors go with it)."""
        it, self._iter = self._iter, None
        if it is not None and hasattr(it, "close"):
            it.close()

    def info(self) -> dict[str, Any]:
        """The engine's settings and the work per node (id, address, items) for ``run.json``."""
        import ray
        try:
            address = {n["NodeID"]: n.get("NodeManagerAddress", "") for n in ray.nodes()}
        except Exception:  # the cluster went away mid-run: report the counts without addresses
            address = {}
        return {
            **self.spec.to_dict(), "actors": self.concurrency,
            "nodes": [{"node_id": node, "address": address.get(node, ""), "files": count}
                      for node, count in sorted(self.nodes.items())],
        }
