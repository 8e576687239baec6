"""MTL (s-Aff-Wild2) datasets and the LightningDataModule over the official files.

Layout under the data root (real data and the embedded synthetic data alike)::

    <root>/training_set_annotations.txt        abaw.vocab.MTL_TRAIN_FILE
    <root>/validation_set_annotations.txt      abaw.vocab.MTL_VAL_FILE
    <root>/MTL_Challenge_test_set_release.txt  abaw.vocab.MTL_TEST_LIST
    <root>/cropped_aligned/<video>/<frame>.jpg train and validation images
    <test image root>/<video>/<frame>.jpg      test images (a separate tree, see
                                               :data:`TEST_IMAGE_DIRS`)

Conventions:

- one sample is one annotation row: ``image`` (float tensor), ``va`` (2,) float32 with the
  ``-5`` sentinel kept, ``va_mask`` (bool), ``expr`` (int64, ``-1`` = missing), ``au`` (12,)
  int64 (``-1`` per column = missing), ``index`` (the row in the annotation file, 0-based
  over data rows). Partially labelled rows stay in the batch; the losses and the metric use
  the masks, so a plain shuffled loader is a valid multi-task batch composition. With
  ``balance="task"`` a weighted sampler draws rows so each task's labelled rows are drawn
  about equally often in expectation (useful when one task's labels are much rarer).
- ``tasks`` restricts the labels a model sees (a single-task baseline): the other tasks'
  labels are blanked to their sentinels and rows left with no label are dropped;
- missing images are found once in :meth:`MtlDataModule.setup` and skipped; unreadable ones
  are skipped at load time (:func:`abaw.data.loaders.collate_skip_unreadable`); see
  :mod:`abaw.data.images`; the loaders follow :class:`abaw.data.loaders.SplitDataModule`;
- nothing is read in ``__init__``; the data root comes from the argument or the
  ``ABAW_DATA_ROOT`` environment variable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from abaw.data.batch_augment import BatchAugment
from abaw.data.cache import DecodedImages, decode_split
from abaw.data.images import (
    ImageProblems,
    MissingTestPolicy,
    check_images,
    grey_image,
    load_rgb,
    refuse_missing_test_images,
)
from abaw.data.loaders import SplitDataModule
from abaw.data.transforms import AugmentStrength, eval_transforms, train_transforms
from abaw.errors import AbawError, ConfigError
from abaw.formats.readers import (
    MtlAnnotations,
    MtlLabelMasks,
    read_mtl_annotations,
    read_mtl_test_list,
)
from abaw.vocab import (
    AU_MISSING,
    EXPR_MISSING,
    MTL_IMAGE_DIR,
    MTL_TASKS,
    MTL_TEST_LIST,
    MTL_TEST_TRUTH,
    MTL_TRAIN_FILE,
    MTL_VAL_FILE,
    NUM_AUS,
    NUM_EXPRESSIONS,
    VA_MISSING,
)

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "ABAW_DATA_ROOT"
#: Candidate test image trees under the data root, first existing wins (the embedded
#: synthetic data uses the first; a real copy may have merged the test crops into the main
#: tree — harmless, since test videos have their own folder names).
TEST_IMAGE_DIRS: tuple[str, ...] = (f"test/{MTL_IMAGE_DIR}", MTL_IMAGE_DIR)

Split = Literal["train", "val", "test"]
Balance = Literal["none", "task"]


def resolve_data_root(data_root: str | os.PathLike[str] | None) -> Path:
    """The data root from the argument, else ``$ABAW_DATA_ROOT``; ConfigError if neither."""
    value = data_root if data_root not in (None, "") else os.environ.get(DATA_ROOT_ENV)
    if not value:
        raise ConfigError(
            f"no MTL data root: set data.data_root in the config or the {DATA_ROOT_ENV} "
            "environment variable (e.g. `abaw synth data/synth` makes the embedded data)"
        )
    root = Path(value).expanduser()
    if not root.is_dir():
        raise ConfigError(f"MTL data root {root} is not a directory")
    return root


def _check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in MTL_TASKS]
    if not tasks or unknown or len(set(tasks)) != len(tasks):
        raise ConfigError(f"tasks must be distinct names among {MTL_TASKS}, got {list(tasks)}")
    return tasks


@dataclass(frozen=True)
class MtlLabels(MtlLabelMasks):
    """Row-aligned label arrays of one split, restricted to the chosen tasks (masks from
    :class:`abaw.formats.readers.MtlLabelMasks`)."""

    images: np.ndarray  # object array of paths relative to the image root
    va: np.ndarray  # (N, 2) float32, -5 where missing
    expression: np.ndarray  # (N,) int64, -1 where missing
    aus: np.ndarray  # (N, 12) int64, -1 per missing column
    rows: np.ndarray  # (N,) int64: row index in the annotation file (0-based data rows)

    @classmethod
    def from_annotations(cls, ann: MtlAnnotations, tasks: Sequence[str]) -> MtlLabels:
        va = np.asarray(ann.va, dtype=np.float32).copy()
        expression = np.asarray(ann.expression, dtype=np.int64).copy()
        aus = np.asarray(ann.aus, dtype=np.int64).copy()
        # A row is VA-labelled only when both values are; blank half-labelled pairs.
        va[~ann.va_mask] = VA_MISSING
        if "va" not in tasks:
            va[:] = VA_MISSING
        if "expr" not in tasks:
            expression[:] = EXPR_MISSING
        if "au" not in tasks:
            aus[:] = AU_MISSING
        return cls(np.asarray(ann.images, dtype=object), va, expression, aus,
                   np.arange(len(expression), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.expression)

    @property
    def labelled(self) -> np.ndarray:
        """Rows with at least one label left."""
        return self.va_mask | self.expr_mask | self.au_mask.any(axis=1)

    def subset(self, keep: np.ndarray) -> MtlLabels:
        return MtlLabels(self.images[keep], self.va[keep], self.expression[keep],
                         self.aus[keep], self.rows[keep])


@dataclass(frozen=True)
class MtlLabelStats:
    """Training-label statistics the module needs (class weights, pos_weight, AU graph init).

    Holds the raw training labels (small: 13 int64 per row) so every statistic is computed
    by the one function that defines it in :mod:`abaw.models.losses` / ``au_graph``.
    """

    expression: np.ndarray  # (N,) int64 with -1
    aus: np.ndarray  # (N, 12) int64 with -1
    va_count: int

    @property
    def expression_counts(self) -> np.ndarray:
        """(8,) number of training rows per expression class."""
        labelled = self.expression[self.expression >= 0]
        return np.bincount(labelled, minlength=NUM_EXPRESSIONS)

    @property
    def au_positive_rate(self) -> np.ndarray:
        """(12,) fraction of labelled rows where each AU is active (0 where none labelled)."""
        labelled = (self.aus >= 0).sum(axis=0)
        positive = (self.aus == 1).sum(axis=0)
        return np.divide(positive, labelled, out=np.zeros(NUM_AUS), where=labelled > 0)

    @property
    def au_labelled_rows(self) -> int:
        return int((self.aus >= 0).any(axis=1).sum())

    def summary(self) -> str:
        return (f"train labels: VA {self.va_count}, expression {int(self.expression_counts.sum())} "
                f"(per class {self.expression_counts.tolist()}), AU {self.au_labelled_rows} rows")


# --- datasets ---------------------------------------------------------------------------------


class MtlDataset(Dataset):
    """Annotated MTL rows (train or validation); items as described in the module docstring.

    A row whose image fails to decode yields ``None`` (dropped by
    :func:`~abaw.data.loaders.collate_skip_unreadable`), and the path is reported once per
    process.
    """

    def __init__(self, image_root: str | Path, labels: MtlLabels, transform: Any,
                 split: str = "train", problems_file: str | Path | None = None,
                 decoded: DecodedImages | None = None) -> None:
        self.image_root = Path(image_root)
        self.labels = labels
        self.transform = transform
        self.split = split
        self.problems_file = Path(problems_file) if problems_file is not None else None
        self.decoded = decoded
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.labels)

    def _report_unreadable(self, relative: str) -> None:
        if relative in self._reported:
            return
        self._reported.add(relative)
        log.warning("%s: unreadable image %s under %s; skipped", self.split, relative,
                    self.image_root)
        if self.problems_file is not None:
            # plain append: several loader workers may add a line each
            self.problems_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.problems_file, "a", encoding="utf-8") as handle:
                handle.write(f"unreadable\t{relative}\n")

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        labels = self.labels
        relative = str(labels.images[i])
        image = _load(self.image_root / relative, i, self.decoded, self.transform)
        if image is None:
            self._report_unreadable(relative)
            return None
        va = torch.from_numpy(labels.va[i])
        return {
            "image": image,
            "va": va,
            "va_mask": torch.tensor(bool((labels.va[i] > VA_MISSING).all())),
            "expr": torch.tensor(labels.expression[i], dtype=torch.int64),
            "au": torch.from_numpy(labels.aus[i]),
            "index": torch.tensor(labels.rows[i], dtype=torch.int64),
        }

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any] | None] | dict[str, Any]:
        """A whole batch in one read of the decoded cache (already collated); per item
        without the cache. Unreadable images are left out of the batch and reported."""
        if self.decoded is None:
            return [self[i] for i in indices]
        rows = np.asarray(indices, dtype=np.int64)
        for i in rows[~self.decoded.ok[rows]]:
            self._report_unreadable(str(self.labels.images[i]))
        rows = rows[self.decoded.ok[rows]]
        if len(rows) == 0:
            return []
        labels = self.labels
        va = labels.va[rows]
        return {
            "image": _pixels(self.decoded, rows),
            "va": torch.from_numpy(va),
            "va_mask": torch.from_numpy((va > VA_MISSING).all(axis=1)),
            "expr": torch.from_numpy(labels.expression[rows]),
            "au": torch.from_numpy(labels.aus[rows]),
            "index": torch.from_numpy(labels.rows[rows]),
        }


def _pixels(decoded: DecodedImages, rows: np.ndarray) -> torch.Tensor:
    """``uint8`` (B, 3, S, S) of the cached images ``rows`` (one gather from the memory map)."""
    return torch.from_numpy(decoded.pixels[rows]).permute(0, 3, 1, 2).contiguous()


class MtlImageListDataset(Dataset):
    """Images of a list (the test list) for prediction: items ``image`` and ``index``.

    Nothing can be skipped here: a missing or unreadable image either raises (policy
    ``"error"``) or is replaced by a mid-grey image with a warning (policy ``"grey"``).
    """

    def __init__(self, image_root: str | Path, images: Sequence[str], transform: Any,
                 img_size: int, missing: MissingTestPolicy = "error",
                 decoded: DecodedImages | None = None) -> None:
        self.image_root = Path(image_root)
        self.images = list(images)
        self.transform = transform
        self.img_size = img_size
        self.missing = missing
        self.decoded = decoded

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = _load(self.image_root / self.images[i], i, self.decoded, self.transform)
        if image is None:
            if self.missing == "error":
                raise AbawError(f"image {self.image_root / self.images[i]} cannot be read; "
                                "every listed image needs a prediction")
            log.warning("test image %s unreadable: predicting from a GREY image",
                        self.image_root / self.images[i])
            grey = grey_image(self.img_size)
            image = (torch.from_numpy(grey).permute(2, 0, 1).contiguous()
                     if self.decoded is not None else self.transform(image=grey)["image"])
        return {"image": image, "index": torch.tensor(i, dtype=torch.int64)}


def _load(path: Path, i: int, decoded: DecodedImages | None, transform: Any) -> torch.Tensor | None:
    """Image ``i``: from the decoded cache as ``uint8`` (3, S, S) (augmented later, per batch,
    by :class:`~abaw.data.batch_augment.BatchAugment`), else decoded from ``path`` and passed
    through the albumentations ``transform``; ``None`` when unreadable."""
    if decoded is not None:
        if not decoded.ok[i]:
            return None
        return _pixels(decoded, np.array([i]))[0]
    image = load_rgb(path)
    return None if image is None else transform(image=image)["image"]


def task_balanced_weights(labels: MtlLabels) -> np.ndarray:
    """Per-row sampling weights giving every task the same expected number of labelled rows.

    A row's weight is ``Σ_t [row labelled for t] / n_t`` over the tasks with ``n_t > 0``
    labelled rows, so a task labelled on few rows is drawn as often as a common one.
    """
    masks = [labels.va_mask, labels.expr_mask, labels.au_mask.any(axis=1)]
    weights = np.zeros(len(labels), dtype=np.float64)
    for mask in masks:
        count = int(mask.sum())
        if count:
            weights += mask / count
    return weights


# --- the datamodule ---------------------------------------------------------------------------


class MtlDataModule(SplitDataModule):
    """The MTL challenge data: train/val from the annotation files, test = the labelled test
    file (synthetic data only), predict = the test list (or the validation images).

    Args:
        data_root: folder holding the official MTL files (default: ``$ABAW_DATA_ROOT``).
        test_image_root: folder of the test images (``<video>/<frame>.jpg``); default: the
            first of ``<data_root>/test/cropped_aligned`` and ``<data_root>/cropped_aligned``
            that exists.
        test_annotations: labelled test file for ``abaw test``; default
            ``<data_root>/test_set_annotations.txt`` (the synthetic data ships it).
        img_size: model input side in pixels (linked to the model's).
        batch_size: training batch size per device.
        eval_batch_size: validation/test/predict batch size (default: 2 x ``batch_size``).
        num_workers: loader worker processes (0 = load in the main process).
        augment: training augmentation strength (see :mod:`abaw.data.transforms`).
        tasks: the tasks whose labels are used (others blanked, unlabelled rows dropped).
        balance: ``"none"`` (shuffle) or ``"task"`` (see :func:`task_balanced_weights`).
        predict_split: what ``abaw predict`` predicts: ``"test"`` (the test list) or
            ``"val"`` (the validation images, for threshold fitting and ``abaw score``).
        missing_test_images: ``"error"`` (refuse) or ``"grey"`` (predict from grey, warn).
        report_dir: where image-problem lists go (default: the trainer's log dir).
        seed: seed of the task-balancing sampler (``balance="task"``).
        cache: decode every split once into a memory-mapped ``uint8`` array at ``img_size``
            (:mod:`abaw.data.cache`) and augment whole batches on the device
            (:class:`~abaw.data.batch_augment.BatchAugment`); ``False`` decodes JPEGs on every
            access and augments per image with albumentations.
        cache_dir: the decoded-image cache folder (default ``$ABAW_DECODED_CACHE`` or
            ``~/.cache/abaw/decoded``).
    """

    def __init__(
        self,
        data_root: str | None = None,
        test_image_root: str | None = None,
        test_annotations: str | None = None,
        img_size: int = 112,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        augment: AugmentStrength = "medium",
        tasks: Sequence[str] = MTL_TASKS,
        balance: Balance = "none",
        predict_split: Literal["test", "val"] = "test",
        missing_test_images: MissingTestPolicy = "error",
        report_dir: str | None = None,
        seed: int = 0,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if img_size < 8:
            raise ConfigError(f"data.img_size must be at least 8 pixels, got {img_size}")
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ConfigError("data.batch_size and data.eval_batch_size must be at least 1")
        self.tasks = _check_tasks(tasks)
        self.save_hyperparameters()
        self.data_root = data_root
        self.test_image_root = test_image_root
        self.test_annotations = test_annotations
        self.img_size = img_size
        self.augment = augment
        self.balance = balance
        self.predict_split = predict_split
        self.missing_test_images = missing_test_images
        self.report_dir = report_dir
        self.cache = cache
        self.cache_dir = cache_dir
        self.batch_augment = BatchAugment(augment)
        #: images of the predict dataset, in its order (the submission writer needs them)
        self.predict_images: list[str] = []
        #: the test list (predict_split="test"): entries in order, repeats kept
        self.predict_test_list: list[str] | None = None
        self.problems: dict[str, ImageProblems] = {}

    # -- paths ----------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return resolve_data_root(self.data_root)

    @property
    def image_root(self) -> Path:
        return self.root / MTL_IMAGE_DIR

    def resolved_test_image_root(self) -> Path:
        if self.test_image_root:
            return Path(self.test_image_root).expanduser()
        for candidate in TEST_IMAGE_DIRS:
            if (self.root / candidate).is_dir():
                return self.root / candidate
        return self.root / TEST_IMAGE_DIRS[0]

    def _report_dir(self) -> Path | None:
        if self.report_dir:
            return Path(self.report_dir)
        trainer = self.trainer
        if trainer is not None and trainer.log_dir is not None:
            return Path(trainer.log_dir)
        return None

    # -- statistics -----------------------------------------------------------------------------
    @cached_property
    def label_stats(self) -> MtlLabelStats | None:
        """Training-label statistics (read on first access); ``None`` without a training file.

        Linked into the model by the CLI at instantiation (class weights, AU pos_weight, AU
        graph initialisation); when only a checkpoint is evaluated they come from it instead.
        """
        path = self.root / MTL_TRAIN_FILE
        if not path.is_file():
            log.info("no %s: label statistics unavailable", path)
            return None
        labels = MtlLabels.from_annotations(read_mtl_annotations(path), self.tasks)
        return MtlLabelStats(labels.expression, labels.aus, int(labels.va_mask.sum()))

    # -- setup ----------------------------------------------------------------------------------
    def read_annotations(self, path: Path, split: str) -> MtlAnnotations:
        """The annotated rows of ``split`` read from ``path`` (a subclass may read another
        layout: :class:`abaw.data.per_video.PerVideoDataModule`)."""
        return read_mtl_annotations(path)

    def _annotated(self, path: Path, split: str, transform: Any) -> MtlDataset:
        labels = MtlLabels.from_annotations(self.read_annotations(path, split), self.tasks)
        dropped = int((~labels.labelled).sum())
        if dropped:
            log.info("%s: %d rows carry no label for tasks %s; dropped", split, dropped,
                     list(self.tasks))
        labels = labels.subset(labels.labelled)
        image_root = self.image_root if split != "test" else self.resolved_test_image_root()
        problems = check_images(image_root, labels.images, split)
        report_dir = self._report_dir()
        problems.report(report_dir)
        self.problems[split] = problems
        if problems.missing:
            labels = labels.subset(~np.isin(labels.images, problems.missing))
        if len(labels) == 0:
            raise AbawError(f"{path}: no usable rows for tasks {list(self.tasks)}")
        problems_file = report_dir / f"image_problems_{split}.txt" if report_dir else None
        return MtlDataset(image_root, labels, transform, split, problems_file,
                          self._decoded(image_root, labels.images, split))

    def _decoded(self, image_root: Path, images: Sequence[str], split: str) -> DecodedImages | None:
        if not self.cache:
            return None
        return decode_split(image_root, [str(p) for p in images], self.img_size,
                            self.cache_dir, label=split)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Cached ``uint8`` batches → normalised floats, augmented while training."""
        if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor) \
                and batch["image"].dtype == torch.uint8:
            training = self.trainer is not None and self.trainer.training
            batch["image"] = self.batch_augment(batch["image"], train=training)
        return batch

    def setup(self, stage: str | None = None) -> None:
        root = self.root
        evaluate = eval_transforms(self.img_size)
        if stage in (None, "fit"):
            train = train_transforms(self.img_size, self.augment)
            self.datasets["train"] = self._annotated(root / MTL_TRAIN_FILE, "train", train)
        if stage in (None, "fit", "validate"):
            self.datasets["val"] = self._annotated(root / MTL_VAL_FILE, "val", evaluate)
        if stage == "test":
            path = Path(self.test_annotations) if self.test_annotations else root / MTL_TEST_TRUTH
            if not path.is_file():
                raise ConfigError(
                    f"`abaw mtl test` needs labelled test data and {path} does not exist (the real "
                    "test labels are not released: use `abaw mtl predict` and submit instead)")
            self.datasets["test"] = self._annotated(path, "test", evaluate)
        if stage == "predict":
            self._setup_predict(evaluate)

    def _setup_predict(self, transform: Any) -> None:
        if self.predict_split == "val":
            # Every validation row, in file order with repeats, whatever ``tasks`` says: the
            # written file must cover the whole annotation file for `abaw score` to match it.
            images = [str(p) for p in read_mtl_annotations(self.root / MTL_VAL_FILE).images]
            self.predict_images = images
            self.predict_test_list = None
            self.datasets["predict"] = MtlImageListDataset(
                self.image_root, images, transform, self.img_size, self.missing_test_images,
                self._decoded(self.image_root, images, "val"))
            return
        test_list = read_mtl_test_list(self.root / MTL_TEST_LIST)
        distinct = list(dict.fromkeys(test_list))  # repeats predicted once, written per entry
        image_root = self.resolved_test_image_root()
        problems = check_images(image_root, distinct, "test")
        self.problems["test"] = problems
        if self.missing_test_images == "error":
            refuse_missing_test_images(problems)
        elif problems.count:
            problems.report(self._report_dir(), skipped=False)
            log.warning("!!! %d test images are MISSING and will be predicted from a GREY image "
                        "(data.missing_test_images=grey) — the submission is degraded",
                        problems.count)
        self.predict_images = distinct
        self.predict_test_list = list(test_list)
        self.datasets["predict"] = MtlImageListDataset(
            image_root, distinct, transform, self.img_size, self.missing_test_images,
            self._decoded(image_root, distinct, "test"))

    # -- loaders (abaw.data.loaders.SplitDataModule) -------------------------------------------
    def train_sampler(self, dataset: Dataset) -> WeightedRandomSampler | None:
        if self.balance != "task":
            return None
        weights = task_balanced_weights(dataset.labels)
        return WeightedRandomSampler(torch.from_numpy(weights), len(dataset),
                                     generator=torch.Generator().manual_seed(self.hparams.seed))
