"""A Ray cluster of several nodes on this one machine, on loopback: to try, test and measure the
cluster path (``--ray-address``) without a second machine.

Each node is one ``ray start --block`` in its own process group, so stopping the cluster stops these
processes only (``ray stop`` would stop every Ray of the user on the machine).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

# Token authentication would make the second node fail to join; usage statistics would dial out.
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(*args: str) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "ray"), "start", "--node-ip-address", "127.0.0.1",
               "--block", *args]
    return subprocess.Popen(command, env={**os.environ, **CLUSTER_ENV}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_for(condition: Callable[[], bool], what: str, tries: int = 240) -> None:
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.5)
    raise RuntimeError(f"the loopback Ray cluster did not come up: {what}")


@contextlib.contextmanager
def loopback_cluster(nodes: int = 2, cpus_per_node: int = 1) -> Iterator[str]:
    """Start a head and ``nodes - 1`` workers on 127.0.0.1, join this process as the driver, and
    yield the cluster's address; everything started here is stopped on leaving, even on error."""
    import ray
    os.environ.update(CLUSTER_ENV)
    address = f"127.0.0.1:{_free_port()}"
    cpus = str(cpus_per_node)
    started = [_ray_start("--head", "--port", address.split(":")[1], "--num-cpus", cpus,
                          "--include-dashboard", "false")]
    try:
        def joined() -> bool:
            try:
                ray.init(address=address, _node_ip_address="127.0.0.1", logging_level="WARNING",
                         log_to_driver=False)
                return True
            except (ConnectionError, RuntimeError):
                return False

        _wait_for(joined, "head node")
        for _ in range(nodes - 1):
            started.append(_ray_start("--address", address, "--num-cpus", cpus))
        _wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == nodes, f"{nodes} nodes")
        yield address
    finally:
        ray.shutdown()
        for process in started:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _forget_address(address)


def _forget_address(address: str) -> None:
    """Remove the address file ``ray start`` left for this cluster (``ray stop`` would), so that a
    later plain ``ray.init()`` does not look for a cluster that is gone."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # pragma: no cover - another Ray layout: the file is only a hint anyway
        return
    path = Path(get_ray_address_file(None))
    try:
        if path.read_text().strip().rsplit(":", 1)[-1] == address.rsplit(":", 1)[-1]:
            path.unlink()
    except OSError:
        pass
