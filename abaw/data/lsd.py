"""LSD data: the class-folder trees and the flat test list as datasets, and their DataModule.

Conventions:

- a sample is a dict ``{"image": float32 (3, S, S), "label": int 0..5 (-1 for the unlabelled
  test list), "occluded": int 1/0 (-1 = unknown), "index": position in the dataset}``;
  ``index`` lets predictions be put back in list order (the submission needs that order);
- the label tree (class folders, read by :func:`abaw.formats.readers.read_lsd_tree`; every
  accepted spelling of the Anger folder) and the folder images are loaded from can differ:
  a super-resolved copy keeps every relative path, so ``train_image_dir`` may point at it
  while ``train_dir`` still lists the original tree (an interrupted SR run then shows up as
  missing images, reported once, instead of silently shrinking the training set);
- occlusion labels come from a CSV with at least the columns ``image,hand`` (``image``
  relative to the tree it describes, ``hand`` 0/1; other columns such as a detector score or
  box are ignored): the synthetic generator's recorded flags, or ``abaw lsd hands`` output
  as pseudo-labels. Images the CSV does not name are unknown (-1). No CSV, or a path that
  does not exist, disables occlusion supervision with one log line — unless ``hand_paste``
  is on: then a rendered hand is pasted on that share of the training faces (flag 1) and the
  others count as hand-free (flag 0, unless the CSV says otherwise), which is what lets the
  occlusion head learn from a synthetic set that has no hands at all;
- missing images are found up front and skipped (one summary line); an image that fails to
  decode is skipped at load time (:func:`abaw.data.images.load_rgb` gives ``None`` and
  :func:`collate_skip_unreadable` drops it). Test images cannot be skipped: a missing or
  undecodable one is an error, or a grey stand-in with ``missing_test_images="grey"``;
- class imbalance (about half of the synthetic set is Sadness) is handled by ``balance``:
  ``"sampler"`` draws samples with probability ∝ count(class)^-power (power 1 = every class
  equally often per epoch), ``"loss"`` hands class weights ∝ count^-power to the module
  (:meth:`LsdDataModule.loss_class_weights`), ``"none"`` leaves the data as it is;
- ``augment="bridge"`` is the LSD domain bridge
  (:func:`abaw.data.transforms.domain_bridge_transforms`): it adds
  to the generic pipelines the degradations that separate clean renders from real frames.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from abaw.data.images import (
    ImageProblems,
    check_images,
    grey_image,
    load_rgb,
    refuse_missing_test_images,
)
from abaw.data.loaders import SplitDataModule, collate_skip_unreadable
from abaw.data.mtl import DATA_ROOT_ENV
from abaw.data.transforms import AUGMENTS, eval_transforms, lsd_train_transforms
from abaw.errors import AbawError, ConfigError
from abaw.formats.readers import read_lsd_test_list, read_lsd_tree, read_occlusion_csv
from abaw.formats.submissions import read_lsd_labels
from abaw.models.losses import expression_class_weights
from abaw.vocab import (
    LSD_TEST_DIR,
    LSD_TEST_LIST,
    LSD_TEST_TRUTH,
    LSD_TRAIN_DIR,
    LSD_VAL_DIR,
    NUM_LSD_CLASSES,
)

log = logging.getLogger(__name__)

__all__ = [
    "AUGMENTS",
    "DATA_ROOT_ENV",
    "LsdDataModule",
    "LsdDataset",
    "class_balanced_sample_weights",
    "collate_skip_unreadable",
    "paste_hand",
]

UNKNOWN = -1

Balance = Literal["none", "sampler", "loss"]
BALANCES: tuple[str, ...] = ("none", "sampler", "loss")
Split = Literal["train", "val", "test"]


# --- hand pasting -----------------------------------------------------------------------------

#: Where a pasted hand is centred, as fractions (x, y) of a face crop, per
#: :data:`abaw.synth.state.HAND_PLACES` name (face crops are centred and roughly aligned).
HAND_ANCHORS: dict[str, tuple[float, float]] = {
    "mouth": (0.5, 0.74),
    "cheek_left": (0.28, 0.62),
    "cheek_right": (0.72, 0.62),
    "eyes": (0.36, 0.42),
    "chin": (0.5, 0.9),
}
#: Side of the canonical canvas the generator's hand sizes refer to.
HAND_CANVAS = 224.0


def paste_hand(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of the RGB face crop ``image`` with a rendered hand over part of the face.

    The hand is the synthetic generator's (:func:`abaw.synth.hands.draw_hand`, random pose
    from :func:`abaw.synth.dynamics.sample_hand`) in the skin colour of the crop's centre,
    so a hand-free training set gets known-positive occlusion examples. Imported on use: the
    generator is needed only when pasting is switched on.
    """
    from abaw.synth.dynamics import sample_hand
    from abaw.synth.hands import draw_hand

    height, width = image.shape[:2]
    hand = sample_hand(rng)
    fx, fy = HAND_ANCHORS.get(hand.place, (0.5, 0.6))
    anchor = np.array([fx * width, fy * height])
    # skin tone: the median of a small patch around the nose (the crop's centre)
    y0, y1 = int(height * 0.45), max(int(height * 0.55), int(height * 0.45) + 1)
    x0, x1 = int(width * 0.45), max(int(width * 0.55), int(width * 0.45) + 1)
    skin = tuple(int(v) for v in np.median(image[y0:y1, x0:x1].reshape(-1, 3), axis=0))
    canvas = np.ascontiguousarray(image.copy())
    draw_hand(canvas, anchor, hand, skin, min(height, width) / HAND_CANVAS, rgb=True)
    return canvas


# --- class balance ----------------------------------------------------------------------------


def _class_counts(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels[labels >= 0], minlength=NUM_LSD_CLASSES).astype(np.float64)


def class_balanced_sample_weights(labels: Sequence[int] | np.ndarray, power: float = 1.0) -> np.ndarray:
    """Per-sample drawing weights ∝ count(class of the sample) ** -power, summing to 1.

    With ``power=1`` every class is drawn equally often in expectation; ``0.5`` is the
    square-root compromise; 0 is uniform. Unlabelled samples (-1) get weight 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if power < 0:
        raise ConfigError(f"balance_power must be >= 0, got {power}")
    counts = _class_counts(labels)
    per_class = np.zeros(NUM_LSD_CLASSES)
    present = counts > 0
    per_class[present] = counts[present] ** -power
    weights = np.where(labels >= 0, per_class[np.clip(labels, 0, None)], 0.0)
    total = weights.sum()
    if total <= 0:
        raise ConfigError("no labelled sample: cannot balance classes")
    return weights / total


def _loss_class_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Inverse-frequency weights (abaw.models.losses) raised to ``power``, mean 1 over present."""
    weights = expression_class_weights(labels, num_classes=NUM_LSD_CLASSES).astype(np.float64)
    present = weights > 0
    weights[present] = weights[present] ** power
    weights[present] /= weights[present].mean()
    return weights.astype(np.float32)


# --- occlusion labels -------------------------------------------------------------------------


def _occlusion_for(images: Sequence[str], csv_path: str | Path | None, split: str,
                   tree_name: str = "") -> np.ndarray:
    """Per-image occlusion flags (1/0, -1 unknown) from ``csv_path``, logging what was found.

    CSV names may also carry the tree's own folder as a prefix (``<tree_name>/SADNESS/x.jpg``,
    as the synthetic generator's ``_latent/*.csv`` files name them): it is stripped.
    """
    unknown = np.full(len(images), UNKNOWN, dtype=np.int64)
    if csv_path is None:
        log.info("%s: no occlusion CSV given; occlusion labels unknown", split)
        return unknown
    if not Path(csv_path).is_file():
        log.warning("%s: occlusion CSV %s not found; occlusion head disabled", split, csv_path)
        return unknown
    flags = read_occlusion_csv(csv_path)
    prefix = f"{tree_name}/" if tree_name else ""
    if prefix:
        flags = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in flags.items()}
    occluded = np.array([flags.get(p, UNKNOWN) for p in images], dtype=np.int64)
    known = int((occluded >= 0).sum())
    log.info(
        "%s: occlusion labels for %d of %d images (%d occluded) from %s",
        split, known, len(images), int((occluded == 1).sum()), csv_path,
    )
    if known == 0 and flags:
        log.warning(
            "%s: none of the %d images in %s matches an image of the tree (paths must be "
            "relative to the tree root, e.g. SADNESS/x.jpg)", split, len(flags), csv_path,
        )
    return occluded


# --- datasets ---------------------------------------------------------------------------------


class LsdDataset(Dataset):
    """Images under ``image_root`` at the relative paths ``images``, with labels and flags.

    Use :meth:`from_tree` (a class-folder tree) or :meth:`from_test_list` (the flat test
    folder in list order). ``hand_paste`` is the probability of pasting a rendered hand on
    the face (:func:`paste_hand`; the sample is then flagged occluded, and an unpasted sample
    with an unknown flag counts as hand-free). ``grey_missing`` names images absent from disk that are replaced
    by a mid-grey image; ``unreadable`` says what a file that fails to decode gives: ``None``
    (``"skip"``, dropped by the collate), an error, or a grey image (the last two are for the
    test list, where nothing can be skipped).
    """

    def __init__(
        self,
        image_root: str | Path,
        images: Sequence[str],
        labels: np.ndarray | None = None,
        occluded: np.ndarray | None = None,
        transform: Callable[..., dict[str, Any]] | None = None,
        grey_missing: frozenset[str] = frozenset(),
        img_size: int = 112,
        unreadable: Literal["skip", "error", "grey"] = "skip",
        hand_paste: float = 0.0,
    ) -> None:
        self.image_root = Path(image_root)
        self.images = list(images)
        n = len(self.images)
        self.labels = np.full(n, UNKNOWN, np.int64) if labels is None else np.asarray(labels, np.int64)
        self.occluded = (
            np.full(n, UNKNOWN, np.int64) if occluded is None else np.asarray(occluded, np.int64)
        )
        if self.labels.shape != (n,) or self.occluded.shape != (n,):
            raise ValueError(f"labels and occluded must have shape ({n},)")
        self.transform = transform if transform is not None else eval_transforms(img_size)
        self.grey_missing = grey_missing
        self.img_size = img_size
        self.unreadable = unreadable
        if not 0.0 <= hand_paste <= 1.0:
            raise ConfigError(f"hand_paste must be a probability in [0, 1], got {hand_paste}")
        self.hand_paste = hand_paste
        self._reported: set[str] = set()

    @classmethod
    def from_tree(
        cls,
        tree_root: str | Path,
        *,
        image_root: str | Path | None = None,
        occlusion_csv: str | Path | None = None,
        transform: Callable[..., dict[str, Any]] | None = None,
        split: str = "train",
        img_size: int = 112,
        hand_paste: float = 0.0,
    ) -> tuple[LsdDataset, ImageProblems]:
        """The class tree at ``tree_root``, images read from ``image_root`` (default the tree).

        Images missing under ``image_root`` are dropped; the returned problems say which.
        """
        samples = read_lsd_tree(tree_root)
        root = Path(image_root) if image_root is not None else Path(tree_root)
        images = [str(p).replace("\\", "/") for p in samples.paths]
        labels = np.asarray(samples.labels, dtype=np.int64)
        occluded = _occlusion_for(images, occlusion_csv, split, Path(tree_root).name)
        problems = check_images(root, images, split)
        if problems.missing:
            gone = set(problems.missing)
            keep = np.array([p not in gone for p in images], dtype=bool)
            images = [p for p, k in zip(images, keep) if k]
            labels, occluded = labels[keep], occluded[keep]
        dataset = cls(root, images, labels, occluded, transform, img_size=img_size,
                      hand_paste=hand_paste)
        return dataset, problems

    @classmethod
    def from_test_list(
        cls,
        test_dir: str | Path,
        test_list: str | Path,
        *,
        missing: Literal["error", "grey"] = "error",
        transform: Callable[..., dict[str, Any]] | None = None,
        img_size: int = 112,
    ) -> tuple[LsdDataset, ImageProblems]:
        """The test list's distinct images, in first-seen list order, under ``test_dir``.

        A repeated entry is predicted once; the submission writer repeats it per entry.
        """
        images = list(dict.fromkeys(read_lsd_test_list(test_list)))
        problems = check_images(test_dir, images, "test")
        if missing == "error":
            refuse_missing_test_images(problems)
        elif missing != "grey":
            raise ConfigError(f"missing_test_images must be 'error' or 'grey', got {missing!r}")
        dataset = cls(
            test_dir, images, transform=transform, grey_missing=frozenset(problems.missing),
            img_size=img_size, unreadable=missing,
        )
        return dataset, problems

    def __len__(self) -> int:
        return len(self.images)

    def class_counts(self) -> np.ndarray:
        """Images per class (6 counts; unlabelled samples are not counted)."""
        return _class_counts(self.labels).astype(np.int64)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        relative = self.images[index]
        if relative in self.grey_missing:
            image = grey_image(self.img_size)
        else:
            image = load_rgb(self.image_root / relative)
            if image is None:
                if self.unreadable == "error":
                    raise AbawError(
                        f"{self.image_root / relative}: test image cannot be decoded, and every "
                        "test-list entry needs a prediction (data.missing_test_images=grey "
                        "predicts it from a grey image)"
                    )
                if relative not in self._reported:  # once per image and process
                    self._reported.add(relative)
                    action = "grey stand-in" if self.unreadable == "grey" else "skipped"
                    log.warning("unreadable image %s under %s; %s", relative, self.image_root,
                                action)
                if self.unreadable == "skip":
                    return None
                image = grey_image(self.img_size)
        occluded = int(self.occluded[index])
        if self.hand_paste > 0.0:
            # torch's generator: seeded per loader worker, reproducible under seed_everything
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
            if rng.random() < self.hand_paste:
                image, occluded = paste_hand(image, rng), 1
            elif occluded == UNKNOWN:
                occluded = 0  # pasting assumes a hand-free tree unless the CSV says otherwise
        return {
            "image": self.transform(image=image)["image"],
            "label": int(self.labels[index]),
            "occluded": occluded,
            "index": index,
        }


# --- the DataModule ---------------------------------------------------------------------------


class LsdDataModule(SplitDataModule):
    """Train / validation / test / predict loaders over an LSD data root (official layout).

    Args:
        data_root: folder holding the LSD layout; default ``$ABAW_DATA_ROOT``.
        train_dir: labelled class tree for training; default
            ``<data_root>/training_set_synthetic_images``.
        train_image_dir: where the training images are read from, same relative paths as
            ``train_dir`` (e.g. the super-resolved copy); default ``train_dir``.
        val_dir: labelled class tree for validation; default
            ``<data_root>/validation_set_real_images``.
        test_dir: flat folder of the test images; default ``<data_root>/test_set``.
        test_list: the test list; default ``<data_root>/LSD_Challenge_test_set_release.txt``.
        test_labels: ``image,expression`` truth of the test list, for ``abaw lsd test`` (only the
            synthetic data has one); default ``<data_root>/test_set_labels.txt``.
        occlusion_csv: ``image,hand`` CSV for the training tree (None: no occlusion labels).
        val_occlusion_csv: the same for the validation tree.
        hand_paste: probability of pasting a rendered hand on a training face, flagged
            occluded (trains the occlusion head on a hand-free synthetic set; 0 = off).
        img_size: side of the square network input.
        batch_size: per-device training batch size.
        eval_batch_size: validation/test/predict batch size (default ``2 * batch_size``).
        num_workers: data-loading worker processes (0 = the main process).
        augment: training augmentation, ``"bridge"`` or a generic strength.
        balance: ``"none"``, ``"sampler"`` or ``"loss"`` (see the module docstring).
        balance_power: exponent of the inverse class frequency (1 = fully balanced).
        predict_split: what ``predict`` runs on: ``"test"`` (the list) or ``"val"``.
        missing_test_images: ``"error"`` or ``"grey"`` for test images absent from disk.
        seed: seed of the balanced sampler's generator (reproducible epochs).

    Loaders: :class:`abaw.data.loaders.SplitDataModule` (``balance="sampler"`` sets its
    training sampler).
    """

    def __init__(
        self,
        data_root: str | None = None,
        train_dir: str | None = None,
        train_image_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        test_list: str | None = None,
        test_labels: str | None = None,
        occlusion_csv: str | None = None,
        val_occlusion_csv: str | None = None,
        hand_paste: float = 0.0,
        img_size: int = 112,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        augment: str = "bridge",
        balance: Balance = "sampler",
        balance_power: float = 1.0,
        predict_split: Literal["test", "val"] = "test",
        missing_test_images: Literal["error", "grey"] = "error",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if balance not in BALANCES:
            raise ConfigError(f"balance must be one of {BALANCES}, got {balance!r}")
        if augment not in AUGMENTS:
            raise ConfigError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        if predict_split not in ("test", "val"):
            raise ConfigError(f"predict_split must be 'test' or 'val', got {predict_split!r}")
        if missing_test_images not in ("error", "grey"):
            raise ConfigError(f"missing_test_images must be 'error' or 'grey', got {missing_test_images!r}")
        self.save_hyperparameters()
        self.datasets: dict[str, LsdDataset] = {}
        self.problems: dict[str, ImageProblems] = {}
        #: the test list in order, repeats kept (predict_split="test"); the writer needs it
        self.predict_test_list: list[str] | None = None

    @property
    def predict_split(self) -> str:
        """What ``predict`` runs on: ``"test"`` (the list) or ``"val"``; settable."""
        return self.hparams.predict_split

    @predict_split.setter
    def predict_split(self, split: str) -> None:
        if split not in ("test", "val"):
            raise ConfigError(f"predict_split must be 'test' or 'val', got {split!r}")
        self.hparams.predict_split = split

    # --- paths ---

    def _path(self, explicit: str | None, default_name: str, what: str) -> Path:
        if explicit:
            return Path(explicit).expanduser()
        root = self.hparams.data_root or os.environ.get(DATA_ROOT_ENV)
        if not root:
            raise ConfigError(
                f"no LSD {what}: set data.data_root (or the {DATA_ROOT_ENV} environment "
                f"variable) or data.{what} in the config"
            )
        return Path(root).expanduser() / default_name

    @property
    def train_dir(self) -> Path:
        return self._path(self.hparams.train_dir, LSD_TRAIN_DIR, "train_dir")

    @property
    def val_dir(self) -> Path:
        return self._path(self.hparams.val_dir, LSD_VAL_DIR, "val_dir")

    @property
    def test_dir(self) -> Path:
        return self._path(self.hparams.test_dir, LSD_TEST_DIR, "test_dir")

    @property
    def test_list(self) -> Path:
        return self._path(self.hparams.test_list, LSD_TEST_LIST, "test_list")

    @property
    def test_labels(self) -> Path:
        return self._path(self.hparams.test_labels, LSD_TEST_TRUTH, "test_labels")

    def _report_dir(self) -> str | None:
        trainer = self.trainer
        return getattr(trainer, "log_dir", None) if trainer is not None else None

    # --- setup ---

    def _tree(self, split: str, tree: Path, image_root: str | None, csv_path: str | None,
              transform: Callable[..., dict[str, Any]], hand_paste: float = 0.0) -> LsdDataset:
        if not tree.is_dir():
            raise ConfigError(f"LSD {split} folder {tree} does not exist")
        dataset, problems = LsdDataset.from_tree(
            tree, image_root=image_root, occlusion_csv=csv_path, transform=transform,
            split=split, img_size=self.hparams.img_size, hand_paste=hand_paste,
        )
        problems.report(self._report_dir())
        self.problems[split] = problems
        if len(dataset) == 0:
            raise ConfigError(f"LSD {split} folder {tree}: no usable image")
        log.info("%s: %d images, per class %s", split, len(dataset), dataset.class_counts().tolist())
        return dataset

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        evaluate = eval_transforms(hp.img_size)
        if stage in (None, "fit") and "train" not in self.datasets:
            self.datasets["train"] = self._tree(
                "train", self.train_dir, hp.train_image_dir, hp.occlusion_csv,
                lsd_train_transforms(hp.img_size, hp.augment), hp.hand_paste,
            )
        wants_val = stage in (None, "fit", "validate") or (
            stage == "predict" and hp.predict_split == "val"
        )
        if wants_val and "val" not in self.datasets:
            self.datasets["val"] = self._tree(
                "val", self.val_dir, None, hp.val_occlusion_csv, evaluate
            )
        if stage == "test" and "test" not in self.datasets:
            self.datasets["test"] = self._labelled_test(evaluate)
        if stage == "predict":
            if hp.predict_split == "val":
                self.datasets["predict"] = self.datasets["val"]
                self.predict_test_list = None
            else:
                self.datasets["predict"] = self._test_list(evaluate)

    def _test_list(self, transform: Callable[..., dict[str, Any]]) -> LsdDataset:
        hp = self.hparams
        dataset, problems = LsdDataset.from_test_list(
            self.test_dir, self.test_list, missing=hp.missing_test_images, transform=transform,
            img_size=hp.img_size,
        )
        self.problems["test"] = problems
        if problems.count:
            problems.report(self._report_dir(), skipped=False)
            log.warning("!!! %d test images are MISSING and will be predicted from a GREY image "
                        "(data.missing_test_images=grey): the submission is degraded",
                        problems.count)
        self.predict_test_list = read_lsd_test_list(self.test_list)
        return dataset

    def _labelled_test(self, transform: Callable[..., dict[str, Any]]) -> LsdDataset:
        path = self.test_labels
        if not path.is_file():
            raise ConfigError(
                f"`abaw lsd test` needs labelled LSD test data and {path} does not exist (the real "
                "test labels are not released: use `abaw lsd predict` and submit instead)"
            )
        images, labels = read_lsd_labels(path)
        problems = check_images(self.test_dir, images, "test")
        problems.report(self._report_dir())
        self.problems["test"] = problems
        keep = ~np.isin(np.asarray(images, dtype=object), problems.missing)
        kept = [p for p, k in zip(images, keep) if k]
        return LsdDataset(self.test_dir, kept, np.asarray(labels)[keep], transform=transform,
                          img_size=self.hparams.img_size)

    # --- what the module asks for ---

    @property
    def train_set(self) -> LsdDataset | None:
        return self.datasets.get("train")

    @property
    def has_occlusion_labels(self) -> bool:
        """True when the training set holds known occlusion flags (a CSV, or hand pasting)."""
        train = self.train_set
        if train is None:
            return False
        return train.hand_paste > 0.0 or bool((train.occluded >= 0).any())

    def loss_class_weights(self) -> torch.Tensor | None:
        """Class weights for the loss when ``balance="loss"`` (after ``setup("fit")``)."""
        train = self.train_set
        if self.hparams.balance != "loss" or train is None:
            return None
        return torch.from_numpy(_loss_class_weights(train.labels, self.hparams.balance_power))

    @property
    def predict_images(self) -> list[str]:
        """Relative names of the predict split's images, in the order ``index`` refers to."""
        if "predict" not in self.datasets:
            raise ConfigError("the LSD DataModule is not set up for predict")
        return list(self.datasets["predict"].images)

    # --- loaders ---

    def train_sampler(self, dataset: LsdDataset) -> WeightedRandomSampler | None:
        hp = self.hparams
        if hp.balance != "sampler":
            return None
        weights = class_balanced_sample_weights(dataset.labels, hp.balance_power)
        return WeightedRandomSampler(
            torch.from_numpy(weights), num_samples=len(dataset), replacement=True,
            generator=torch.Generator().manual_seed(hp.seed),
        )
