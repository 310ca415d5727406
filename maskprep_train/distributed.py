"""Running under ``torchrun``: who am I, set up the process group, gather results, tidy up.

Without the launcher's environment variables everything here is a no-op for one process, so the
same training code runs alone or as one of N ranks (DDP, one GPU or CPU process each).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (world_size 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and prints the report."""
        return self.rank == 0


def dist_info_from_env(env: Mapping[str, str] | None = None) -> DistInfo:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE`` as torchrun sets them."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    return DistInfo(rank=int(env.get("RANK", "0")), world_size=world,
                    local_rank=int(env.get("LOCAL_RANK", "0")),
                    local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))))


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group when launched by torchrun (NCCL on GPUs, gloo on CPU)."""
    info = dist_info_from_env()
    if not info.enabled:
        return info
    import torch
    import torch.distributed as dist
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info


def gather(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` alone)."""
    if not info.enabled:
        return [obj]
    import torch.distributed as dist
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here (no-op for one process)."""
    if info.enabled:
        import torch.distributed as dist
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group, if this process joined one."""
    if info.enabled:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
