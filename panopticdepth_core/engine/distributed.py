"""Process-group set-up for one GPU, many GPUs, many machines, or CPU workers (gloo), and for torchrun.

`--num-gpus N` starts N worker processes on this machine (one per GPU; on a machine without CUDA, N CPU workers
talking over gloo, which is how the distributed tests run). Under `torchrun` the environment already names the
rank and world size and no process is spawned.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..modeling.cross_process import world_size


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launched_by_torchrun() -> bool:
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


get_world_size = world_size  # one definition, shared with the losses (panopticdepth_core/modeling/cross_process)


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    if get_world_size() > 1:
        dist.barrier()


def launch(
    main_fn: Callable[..., object],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: tuple = (),
) -> None:
    """Run ``main_fn(*args)`` in every process of the job, with the process group initialised."""
    if launched_by_torchrun():
        local_rank = int(os.environ["LOCAL_RANK"])
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend(), init_method="env://", timeout=timedelta(minutes=30))
        try:
            main_fn(*args)
        finally:
            dist.destroy_process_group()
        return
    world_size = num_gpus_per_machine * num_machines
    if world_size <= 1:
        main_fn(*args)
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT of machine 0")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    mp.spawn(
        _worker,
        nprocs=num_gpus_per_machine,
        args=(main_fn, world_size, num_gpus_per_machine, machine_rank, dist_url, args),
        daemon=False,
    )


def _worker(local_rank: int, main_fn, world_size: int, num_gpus_per_machine: int, machine_rank: int,
            dist_url: str, args: tuple) -> None:
    rank = machine_rank * num_gpus_per_machine + local_rank
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend(), init_method=dist_url, world_size=world_size, rank=rank,
                            timeout=timedelta(minutes=30))
    try:
        synchronize()
        main_fn(*args)
    finally:
        dist.destroy_process_group()
