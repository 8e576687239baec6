"""Data: image loading, albumentations pipelines, datasets and LightningDataModules.

- :mod:`abaw.data.images` — robust RGB loading; missing/unreadable images reported once;
- :mod:`abaw.data.transforms` — training augmentation and evaluation pipelines;
- :mod:`abaw.data.loaders` — the DataLoaders every DataModule builds the same way;
- :mod:`abaw.data.mtl` — MTL datasets and :class:`~abaw.data.mtl.MtlDataModule`;
- :mod:`abaw.data.lsd` — LSD datasets and :class:`~abaw.data.lsd.LsdDataModule`.

Submodules are imported on demand (this package imports nothing heavy).
"""
