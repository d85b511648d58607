"""Multi-process training under `torchrun`, with no code path of its own for one process.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them this is a single process and
every function here is a no-op. Backend: nccl for CUDA, gloo for CPU.
"""

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def cleanup() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` in a process group, else `model` itself."""
    if not dist.is_initialized():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class _GatherRows(torch.autograd.Function):
    """Forward: every process's rows, this process's first. Backward: for this process's
    rows, the sum of the gradients every process computed for them."""

    @staticmethod
    def forward(ctx, rows):
        world, me = world_size(), rank()
        sizes = torch.zeros(world, dtype=torch.long, device=rows.device)
        sizes[me] = len(rows)
        dist.all_reduce(sizes)  # the processes may hold different numbers of rows
        ctx.sizes, ctx.me = sizes.tolist(), me
        padded = rows.new_zeros((max(ctx.sizes), *rows.shape[1:]))
        padded[: len(rows)] = rows
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        parts = [part[:size] for part, size in zip(parts, ctx.sizes)]
        return torch.cat([parts[me], *parts[:me], *parts[me + 1:]])

    @staticmethod
    def backward(ctx, grad):
        me, sizes = ctx.me, ctx.sizes
        before = sum(sizes[:me])
        mine, others = grad[: sizes[me]], grad[sizes[me]:]
        by_rank = torch.cat([others[:before], mine, others[before:]])
        dist.all_reduce(by_rank)
        return by_rank[before: before + sizes[me]]


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows [b, ...] of every process, concatenated: this process's first, then the others'
    in rank order. Gradients flow back to each process's own rows (summed over every process
    that used them), as DPR-style trainers gather passage vectors so that in-batch negatives
    span the whole batch under torchrun. The identity in a single process."""
    if not dist.is_initialized() or world_size() == 1:
        return rows
    return _GatherRows.apply(rows)


def all_sum(*values: float) -> list[float]:
    """Each value summed over all processes (the values themselves in a single process)."""
    if not dist.is_initialized():
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()
