"""A data module's own random draws (batch augmentation, MixUp and CutMix): one generator per device,
seeded per run and per process, so the draws neither shift the global stream (model initialisation,
dropout) nor repeat on every process of a multi-process run."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

# Lightning writes rank 0's state of the data module, so every process's positions go in it, by rank.
BY_RANK = "by_rank"


class RankGenerators:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def get(self, device: torch.device, rank: int) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self.seed * 1_000 + rank)
        return self._generators[device]

    # The positions travel in checkpoints, so a resumed run draws like an unbroken one. A checkpoint
    # is made by all processes together, each calling this.
    def state_dict(self, trainer: pl.Trainer | None) -> dict:
        own = {str(device): generator.get_state() for device, generator in self._generators.items()}
        if trainer is None or trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return own
        by_rank: list = [None] * trainer.world_size
        torch.distributed.all_gather_object(by_rank, own)
        return {BY_RANK: by_rank}

    def load_state_dict(self, state_dict: dict, rank: int) -> None:
        if BY_RANK in state_dict:
            by_rank = state_dict[BY_RANK]
            # Resumed on another number of processes, a process without a saved position takes rank 0's.
            state_dict = by_rank[rank] if rank < len(by_rank) else by_rank[0]
        for device, generator_state in state_dict.items():
            self.get(torch.device(device), rank).set_state(generator_state.cpu())
