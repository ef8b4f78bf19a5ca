"""The in-memory data path: a whole data set held as uint8 tensors, augmented on the training device."""

from __future__ import annotations

import torch

from ..training.errors import UserError
from .augment import augment_batch, check_augmentation
from .base import DataSpec, ImageDataModule, rounded_statistics
from .batches import InMemoryBatches
from .mixing import BatchMixer
from .on_device import ON_DEVICE_CHOICES, is_on_device_choice


class InMemoryDataModule(ImageDataModule):
    """Base for data sets small enough to hold as uint8 tensors (digits, MNIST, CIFAR).

    Subclasses implement `load_splits()`; batching, sharding across processes and on-device
    augmentation are shared here. Augmentation (one of `augment.AUGMENTATIONS`, then MixUp/CutMix
    when their alpha is above 0) runs on training batches after they reach the training device.

    `on_device` places the tensors for a GPU run: true holds every split on the GPU, where batches
    are cut without any copy over the bus; false keeps them in host memory and copies each batch
    through pinned memory; "auto" holds them on the GPU when all splits together take at most
    `ON_DEVICE_AUTO_SHARE` of its memory (MNIST 55 MB, CIFAR-10 185 MB). A CPU run ignores it.
    """

    ON_DEVICE_AUTO_SHARE = 0.25

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        seed: int = 0,
        augment: str = "none",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        on_device: bool | str = "auto",
    ) -> None:
        super().__init__(seed)
        if not is_on_device_choice(on_device):
            raise UserError(f"data.on_device must be {ON_DEVICE_CHOICES}, not {on_device!r}")
        self.on_device = on_device
        self._placed: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}
        try:
            self.augment = check_augmentation(augment)
        except ValueError as error:
            raise UserError(f"data.augment: {error}") from None
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._mixer: BatchMixer | None = None

    def load_splits(self) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], tuple[str, ...]]:
        """({"train"|"val"|"test": (uint8 N x C x H x W images, int64 labels)}, class names)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        self._splits, class_names = self.load_splits()
        train_images = self._splits["train"][0]
        pixels = train_images.float().div_(255).transpose(0, 1).flatten(1)  # C x (N*H*W)
        mean, std = rounded_statistics(pixels.mean(dim=1), pixels.std(dim=1))
        self._spec = DataSpec(
            class_names=tuple(class_names),
            channels=train_images.shape[1],
            image_size=train_images.shape[-1],
            mean=mean,
            std=std,
        )
        try:
            self._mixer = BatchMixer(len(class_names), self.mixup_alpha, self.cutmix_alpha)
        except ValueError as error:
            raise UserError(f"data: {error}") from None

    def split_sizes(self) -> dict[str, int]:
        self.setup()
        return {name: len(labels) for name, (_, labels) in self._splits.items()}

    def _batches(self, split: str, train: bool) -> InMemoryBatches:
        self.setup()
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        images, labels = self._tensors(split, device)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return InMemoryBatches(
            images,
            labels,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train and not self._overfitting(),
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            pin_memory=device.type == "cuda",
            mark_padding=not train,
        )

    def _overfitting(self) -> bool:
        # Lightning turns shuffling off for trainer.overfit_batches by giving a DataLoader a sequential
        # sampler; these batches are no DataLoader, so each epoch drew other images to "memorise".
        return self.trainer is not None and bool(self.trainer.overfit_batches)

    def _tensors(self, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's tensors, on `device` when `on_device` says they belong there (copied once)."""
        if not self.holds_on(device):
            return self._splits[split]
        if (split, device) not in self._placed:
            images, labels = self._splits[split]
            self._placed[split, device] = (images.to(device), labels.to(device))
        return self._placed[split, device]

    def holds_on(self, device: torch.device) -> bool:
        """Whether this run's splits are held on `device` (a GPU) rather than in host memory."""
        if device.type == "cpu" or self.on_device is False:
            return False
        if self.on_device is True:
            return True
        if device.type != "cuda":
            return False
        size = sum(images.nbytes + labels.nbytes for images, labels in self._splits.values())
        return size <= self.ON_DEVICE_AUTO_SHARE * torch.cuda.get_device_properties(device).total_memory

    def train_dataloader(self) -> InMemoryBatches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> InMemoryBatches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> InMemoryBatches:
        return self._batches("test", train=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        mixing = self._mixer is not None and self._mixer.enabled
        if (self.augment == "none" and not mixing) or self.trainer is None or not self.trainer.training:
            return batch
        images, labels = batch
        if self.augment != "none":
            images = augment_batch(images, self.augment, self._generator(images.device))
        if mixing:
            # The mixing draws are a handful of scalars: a CPU generator keeps them off the device queue.
            images, labels = self._mixer(images, labels, self._generator(torch.device("cpu")))
        return images, labels
