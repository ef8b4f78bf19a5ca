"""Batches cut straight out of uint8 tensors: the fast path for data sets that fit in memory.

A per-sample DataLoader indexes, converts and collates every image in Python; here one batch is
one tensor index. Order depends only on (seed, epoch), never on the global RNG, so a resumed run
sees the same batches as an uninterrupted one, on any device.

Held on a GPU, the tensors are cut there and no batch crosses the bus. Held in host memory for a GPU
run, each batch is copied into pinned memory, so that the copy to the device (Lightning's, with
non_blocking) overlaps the work already queued: from ordinary (pageable) memory CUDA first waits
for the device to go idle, every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

# The label of an image repeated only to pad a process's share of an evaluation split.
PADDING = -1


def shard(order: torch.Tensor, rank: int, world_size: int, mark_padding: bool = False) -> torch.Tensor:
    """Process `rank`'s positions of an epoch's `order`: padded by wrapping around, as
    DistributedSampler does, so every process runs as many steps; with `mark_padding`, a position
    there only as padding is -1 - index."""
    if world_size <= 1:
        return order
    missing = math.ceil(len(order) / world_size) * world_size - len(order)
    # Repeated as often as it takes: with fewer images than processes, one repeat leaves some process
    # an empty share, whose loop runs no step while the others wait for it at their first sync.
    padding = order.repeat(math.ceil(missing / len(order)))[:missing] if missing else order[:0]
    return torch.cat([order, -1 - padding if mark_padding else padding])[rank::world_size]


class InMemoryBatches:
    """An iterable of (images, labels) batches over tensors held in memory.

    `rank`/`world_size` shard each epoch's permutation so every process of a distributed run
    sees a disjoint, equally long slice. Batches come from the device the tensors are on;
    `pin_memory` puts host batches in page-locked memory, for a copy to a GPU that does not wait.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        mark_padding: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        # Evaluation: the images repeated to pad a process's share get the label PADDING, so that
        # metrics can leave them out (every process must still run as many steps).
        self.mark_padding = mark_padding
        self.pin_memory = pin_memory and images.device.type == "cpu"
        self.epoch = 0
        # Lightning calls `set_epoch` on a loader's `sampler`; pointing it here keeps the epoch in step.
        self.sampler = self
        self.batch_sampler = None
        self._resume_at = 0
        self._batches_done = 0

    def set_epoch(self, epoch: int) -> None:
        # A restored position belongs to the epoch it was saved in. Lightning stops at len(self)
        # without running the iterator out, so a checkpoint from an epoch's end holds every batch
        # done; restored where the next epoch follows (trainer.max_steps set, a save in the epoch-end
        # validation), it emptied that epoch.
        if epoch != self.epoch:
            self._resume_at = 0
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        """This process's positions in the epoch's order; a padding position is -1 - index."""
        count = len(self.labels)
        if self.shuffle:
            order = torch.randperm(
                count, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            )
        else:
            order = torch.arange(count)
        return shard(order, self.rank, self.world_size, self.mark_padding)

    def __len__(self) -> int:
        per_rank = math.ceil(len(self.labels) / self.world_size)
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Drawn on the host whatever the device, so a run's batch order does not depend on where it
        # runs; one copy per epoch puts it beside the tensors.
        order = self._indices()
        padded = order < 0
        order = torch.where(padded, -1 - order, order).to(self.images.device)
        padded = padded.to(self.images.device) if bool(padded.any()) else None
        start, self._resume_at = self._resume_at, 0
        for batch_index in range(start, len(self)):
            window = slice(batch_index * self.batch_size, (batch_index + 1) * self.batch_size)
            index = order[window]
            self._batches_done = batch_index + 1
            images, labels = self.images.index_select(0, index), self.labels.index_select(0, index)
            if padded is not None:
                labels = labels.masked_fill(padded[window], PADDING)
            if self.pin_memory:
                images, labels = images.pin_memory(), labels.pin_memory()
            yield images, labels
        self._batches_done = 0

    # Lightning stores a loader's state_dict in the checkpoint and restores it on resume, which lets
    # a run killed mid-epoch continue with the batches it had not yet seen.
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self._resume_at = int(state["batches_done"])
