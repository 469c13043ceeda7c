"""Data-parallel collection: which rank this process is, and the few collectives it needs.

Under ``torchrun --nproc-per-node N -m editkit stats ...`` every rank reads the same corpus
stream, takes its share of each chunk of documents, and the per-rank partial sums are summed
(``all_reduce``) at checkpoints and at the end. Backend: ``nccl`` when the model is on CUDA,
``gloo`` on CPU. A single process (no ``WORLD_SIZE`` > 1, no initialised process group) is
rank 0 of 1 and every collective is a no-op.
"""

from __future__ import annotations

import os

import attrs
import torch


@attrs.frozen(kw_only=True)
class DistContext:
    """This process's place in a (possibly trivial) process group."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> DistContext:
        """The initialised default process group, or a single process."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(rank=dist.get_rank(), world_size=dist.get_world_size())
        return cls()

    @classmethod
    def init_from_env(cls, backend: str | None = None) -> tuple[DistContext, bool]:
        """Join the process group ``torchrun`` describes in the environment, if any.

        :returns: the context and whether this call initialised the group (then the caller
            should :func:`shutdown` it).
        """
        import torch.distributed as dist

        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
            return cls.current(), False
        if dist.is_initialized():
            return cls.current(), False
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        return cls.current(), True

    def device(self) -> torch.device:
        """The device this rank should run on: ``cuda:LOCAL_RANK`` if CUDA is there, else CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if self.active else 0)
        return torch.device("cpu")

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place."""
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        if self.active:
            import torch.distributed as dist

            dist.broadcast(tensor, src=src)
        return tensor

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def shard(self, n: int) -> range:
        """Indices ``rank, rank + world, ...`` below ``n`` (this rank's share of a sorted chunk)."""
        return range(self.rank, n, self.world_size)


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
