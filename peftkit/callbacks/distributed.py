"""Deciding the same way on every rank (which rank writes files is
:mod:`peftkit.core.processes`).

Evaluation metrics reach every rank already gathered, so the ranks normally agree; a stop is
still shared with an all-reduce (once per evaluation, never per step) because a stop seen by one
rank only makes the other crash ("Connection closed by peer") or hang.
"""

from __future__ import annotations


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any rank (a no-op without torch.distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], device=reduce_device(dist.get_backend()))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def reduce_device(backend: str) -> str:
    """Where the tensors of ``backend``'s collectives live, named explicitly (torch's default
    device may be set elsewhere): NCCL reduces tensors on the current CUDA device, which is what
    "cuda" means; gloo and the others reduce CPU tensors."""
    return "cuda" if backend == "nccl" else "cpu"
