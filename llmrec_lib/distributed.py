"""Data-parallel helpers shared by the trainer, the recipes CLI and chapter 10's ``torchrun`` worker.

* :func:`init_distributed` joins the process group when the process was started by
  ``torchrun`` (``WORLD_SIZE`` > 1): gloo on CPUs, nccl on GPUs.
* :func:`dist_info` is this process's (rank, world size), ``(0, 1)`` outside a process group.
* :func:`rank` is the rank alone, for "only rank 0 prints or saves".
* :func:`average_gradients` is what DDP does after ``backward``: every gradient averaged over
  the processes (:class:`llmrec_lib.train.Trainer` calls it each step when world > 1).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

__all__ = ["init_distributed", "dist_info", "rank", "average_gradients"]


def init_distributed() -> bool:
    """Under ``torchrun --nproc_per_node N`` (WORLD_SIZE is set): join the process group, gloo
    on CPU and nccl on GPUs. Each process then trains on its slice of every global batch and
    sees the whole global batch's items as negatives (see :mod:`llmrec_lib.train`).

    Returns:
        True if a process group was joined (the caller destroys it when done), False when the
        process runs alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return True


def dist_info() -> tuple[int, int]:
    """Returns:
        (rank, world size) of this process; (0, 1) when no process group is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank() -> int:
    """Returns:
        This process's rank; 0 when no process group is initialised."""
    return dist_info()[0]


def average_gradients(params: Sequence[torch.nn.Parameter], world: int) -> None:
    """What DDP does after backward: average every gradient over the processes, in place.

    Args:
        params: the trainable parameters; one without a gradient gets zeros, so every process
            takes part in the same all-reduces.
        world: the number of processes (the sum is divided by it).
    """
    import torch
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world
