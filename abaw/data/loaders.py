"""The DataLoaders every challenge DataModule builds the same way.

Conventions (:class:`SplitDataModule`):

- ``setup`` fills ``self.datasets`` (``train``, ``val``, ``test``, ``predict``); asking for a
  loader of a split that is not set up is a :class:`~abaw.errors.ConfigError`;
- the hyper-parameters ``batch_size`` (training, per device), ``eval_batch_size``
  (validation/test/predict; ``None`` = ``2 x batch_size``) and ``num_workers`` come from
  ``self.hparams`` (``save_hyperparameters`` in the subclass);
- training shuffles, unless :meth:`SplitDataModule.train_sampler` returns a sampler; it drops
  the last partial batch when the split holds more than one batch, so BatchNorm never sees
  a 1-row batch;
- samples whose image cannot be decoded are ``None`` and dropped by
  :func:`collate_skip_unreadable` (a batch of nothing but those is ``None``, skipped by the
  modules).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from abaw.errors import ConfigError

__all__ = ["SplitDataModule", "collate_skip_unreadable"]


def collate_skip_unreadable(
        batch: list[dict[str, Any] | None] | dict[str, Any]) -> dict[str, Any] | None:
    """``default_collate`` without the ``None`` samples (unreadable images); ``None`` if empty.

    A dict is a batch a dataset's ``__getitems__`` already collated (one read of the decoded
    cache); it passes through unchanged.
    """
    if isinstance(batch, dict):
        return batch
    kept = [sample for sample in batch if sample is not None]
    return default_collate(kept) if kept else None


class SplitDataModule(pl.LightningDataModule):
    """A LightningDataModule whose four loaders follow the conventions above."""

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, Dataset] = {}

    def train_sampler(self, dataset: Dataset) -> Sampler | None:
        """The training sampler (``None``: shuffle)."""
        return None

    def _loader(self, split: str, *, train: bool = False) -> DataLoader:
        if split not in self.datasets:
            raise ConfigError(f"the {split} split is not set up (call setup first)")
        dataset = self.datasets[split]
        hp = self.hparams
        sampler = self.train_sampler(dataset) if train else None
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or 2 * hp.batch_size),
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(dataset) > hp.batch_size,  # no 1-row BatchNorm batches
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            collate_fn=collate_skip_unreadable,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
