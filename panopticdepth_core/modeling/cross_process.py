"""Loss statistics pooled over all training processes, so that DDP trains exactly like one process.

DDP averages the gradients of the ranks' losses. A loss that is a sum over the batch divided by a count of the
batch (things, images) or a non-linear function of pooled sums (the scale-invariant pixel depth loss) is then not
the loss of the whole batch: each rank normalises by its own count and pools only its own pixels. Here every
count and every pooled sum is all-reduced in the forward pass (no collectives in backward, so nothing can
interleave with DDP's gradient buckets), and each rank's loss is shaped so that the average of the ranks'
gradients is the gradient of the whole-batch loss. With one process everything is the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of training processes (1 outside torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_counts(counts: list[float], device: torch.device) -> list[float]:
    """The per-process counts summed over all processes, in one collective (every rank must call this)."""
    if world_size() == 1:
        return [float(c) for c in counts]
    total = torch.tensor(counts, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def normalized(local_sum: Tensor, global_count: float) -> Tensor:
    """``local_sum * W / global_count``: DDP's average over the W ranks then gives sum(all) / count(all)."""
    return local_sum * (world_size() / max(global_count, 1.0))


def pooled(local_sums: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn`` of the sums pooled over all processes, with the gradient DDP needs (every rank must call this).

    The value is fn(S) with S the all-reduced sums. The gradient is W * dfn/dS(S) . dS_local, which DDP averages
    into dfn/dS(S) . dS — the gradient of one process holding the whole batch.
    """
    world = world_size()
    if world == 1:
        return fn(local_sums)
    total = local_sums.detach().clone()
    dist.all_reduce(total)
    leaf = total.requires_grad_(True)
    with torch.enable_grad():
        value = fn(leaf)
        (grad,) = torch.autograd.grad(value, leaf)
    return value.detach() + world * (grad * (local_sums - local_sums.detach())).sum()
