"""Per-video VA / EXPR / AU data (Aff-Wild2, 5th ABAW on) for the frame model of the MTL network.

Layout under the data root (real data and the embedded synthetic data alike)::

    <root>/<task folder>/{Train_Set,Validation_Set}/<video>.txt   line k = frame k
    <root>/cropped_aligned/<video>/<%05d>.jpg                     the face crops
    <root>/test_set_examples/CVPR_<n>th_ABAW_<T>_test_set_example.txt   every test frame

The task folder is found under whichever edition's name it has
(:func:`abaw.formats.readers.find_task_folder`: ``EXPR_Classification_Challenge`` of the 5th
edition or ``EXPR_Recognition_Challenge`` of the 6th on), the sample file likewise
(:func:`abaw.formats.readers.find_sample_file`).

Conventions:

- a training / validation sample is one frame that is labelled for the task **and** has a
  crop (frames without a detected face have an annotation line but no image); the frames
  become rows of the MTL datasets (:class:`abaw.data.mtl.MtlDataset`), the other two tasks'
  labels blanked, so the MTL network, losses and metric are reused unchanged with a
  one-task ``tasks``;
- ``train_stride`` keeps every k-th frame of each training video (consecutive frames are
  nearly identical; an epoch then costs 1/k);
- prediction covers the frames with a crop; every other frame of the sample file is filled
  from the nearest predicted frame of the same video (:func:`nearest_frame_rows`), never
  from another video.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from abaw import vocab
from abaw.data.images import MissingTestPolicy
from abaw.data.mtl import MtlDataModule, MtlImageListDataset, MtlLabels, MtlLabelStats
from abaw.data.transforms import AugmentStrength
from abaw.errors import AbawError, ConfigError, FormatError
from abaw.formats.readers import (
    MtlAnnotations,
    find_sample_file,
    find_task_folder,
    frame_image,
    read_per_video_annotation,
    read_sample_file,
)

log = logging.getLogger(__name__)

PerVideoTask = Literal["va", "expr", "au"]
#: the data module's split names -> the per-video split folders (test: the synthetic truth)
SPLIT_FOLDERS = {"train": vocab.PER_VIDEO_SPLITS[0], "val": vocab.PER_VIDEO_SPLITS[1],
                 "test": "Test_Set"}


def parse_location(location: str) -> tuple[str, int]:
    """``"<video>/<%05d>.jpg"`` → ``(video, frame)``; a :class:`ValueError` otherwise."""
    video, _, name = location.rpartition("/")
    stem = name.rsplit(".", 1)[0]
    if not video or not stem.isdigit() or not stem.isascii():
        raise ValueError(f"not a per-video frame location <video>/<frame>.jpg: {location!r}")
    return video, int(stem)


def nearest_frame_rows(predicted: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """For each of ``wanted``, the row of ``predicted`` holding the nearest frame of the same
    video (by frame number; a tie goes to the earlier frame); ``-1`` where that video has no
    predicted frame at all. A location in both lists maps to itself."""
    by_video: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    grouped: dict[str, list[tuple[int, int]]] = {}
    for row, location in enumerate(predicted):
        video, frame = parse_location(location)
        grouped.setdefault(video, []).append((frame, row))
    for video, pairs in grouped.items():
        pairs.sort()
        by_video[video] = (np.array([f for f, _ in pairs]), np.array([r for _, r in pairs]))
    out = np.full(len(wanted), -1, dtype=np.int64)
    for i, location in enumerate(wanted):
        video, frame = parse_location(location)
        if video not in by_video:
            continue
        frames, rows = by_video[video]
        j = int(np.searchsorted(frames, frame))
        if j == len(frames) or (j > 0 and frame - frames[j - 1] <= frames[j] - frame):
            j -= 1
        out[i] = rows[j]
    return out


def fill_rows(predicted: Sequence[str], wanted: Sequence[str], source: str | Path) -> np.ndarray:
    """:func:`nearest_frame_rows`, refusing a video none of whose frames was predicted (its
    frames cannot be filled without borrowing another video's)."""
    rows = nearest_frame_rows(predicted, wanted)
    if (rows < 0).any():
        first = int(np.flatnonzero(rows < 0)[0])
        video = parse_location(wanted[first])[0]
        raise AbawError(f"{source}: no frame of video {video} has a face crop to predict from "
                        f"({int((rows < 0).sum())} rows); every row needs a prediction")
    return rows


def _crops(image_root: Path, video: str) -> set[str]:
    try:
        return set(os.listdir(image_root / video))
    except OSError:
        return set()


def read_split_frames(folder: Path, task: str, image_root: Path, stride: int = 1
                      ) -> tuple[MtlAnnotations, dict[str, np.ndarray]]:
    """The frames of one split folder labelled for ``task`` that have a crop (every
    ``stride``-th frame of each video), as MTL annotation rows (the other tasks blank), and
    every video's full per-frame values (for scoring every frame)."""
    files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file()) \
        if folder.is_dir() else []
    if not files:
        raise FormatError(folder, None, "no <video>.txt annotation files")
    images, values, lines, videos = [], [], [], {}
    for path in files:
        frames = read_per_video_annotation(path, task)
        videos[path.stem] = frames
        labelled = (frames > vocab.VA_MISSING).all(axis=1) if task == "va" else (
            frames >= 0 if task == "expr" else (frames >= 0).any(axis=1))
        crops = _crops(image_root, path.stem)
        for k in np.flatnonzero(labelled):
            name = vocab.FRAME_NAME_FORMAT.format(int(k) + 1)
            if k % stride == 0 and name in crops:
                images.append(f"{path.stem}/{name}")
                values.append(frames[k])
                lines.append(int(k) + 2)
    n = len(images)
    va = np.full((n, 2), vocab.VA_MISSING, np.float32)
    expression = np.full(n, vocab.EXPR_MISSING, np.int64)
    aus = np.full((n, vocab.NUM_AUS), vocab.AU_MISSING, np.int64)
    if n:
        stacked = np.asarray(values)
        if task == "va":
            va[:] = stacked
        elif task == "expr":
            expression[:] = stacked
        else:
            aus[:] = stacked
    annotations = MtlAnnotations(expression=expression, aus=aus, path=folder,
                                 images=np.asarray(images, dtype=object), valence=va[:, 0],
                                 arousal=va[:, 1], line_numbers=np.asarray(lines, np.int64))
    return annotations, videos


def all_frames(videos: dict[str, np.ndarray]) -> list[str]:
    """Every frame location of ``videos`` (video -> per-frame values), in video order."""
    return [frame_image(video, k + 1) for video, values in videos.items()
            for k in range(len(values))]


class PerVideoDataModule(MtlDataModule):
    """One per-video task (VA, EXPR or AU) as single-task MTL data.

    Args:
        task: ``va``, ``expr`` or ``au`` (linked to ``model.tasks`` by the CLI).
        data_root: folder holding the task folder(s), ``cropped_aligned/`` and the test
            sample file (default: ``$ABAW_DATA_ROOT``).
        image_root: the crops' folder (default ``<data_root>/cropped_aligned``).
        sample_file: the test sample file (default: found under ``data_root``, 5th or 6th
            edition name).
        train_stride: keep every k-th frame of each training video.
        The rest as :class:`abaw.data.mtl.MtlDataModule`.
    """

    def __init__(
        self,
        task: PerVideoTask = "va",
        data_root: str | None = None,
        image_root: str | None = None,
        sample_file: str | None = None,
        train_stride: int = 1,
        img_size: int = 112,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: AugmentStrength = "light",
        predict_split: Literal["test", "val"] = "test",
        missing_test_images: MissingTestPolicy = "error",
        report_dir: str | None = None,
        seed: int = 0,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        if task not in vocab.PER_VIDEO_TASKS:
            raise ConfigError(f"data.task must be one of {', '.join(vocab.PER_VIDEO_TASKS)}, "
                              f"got {task!r}")
        if train_stride < 1:
            raise ConfigError(f"data.train_stride must be at least 1, got {train_stride}")
        super().__init__(data_root=data_root, img_size=img_size, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers,
                         augment=augment, tasks=(task,), predict_split=predict_split,
                         missing_test_images=missing_test_images, report_dir=report_dir,
                         seed=seed, cache=cache, cache_dir=cache_dir)
        self.task = task
        self.image_root_override = image_root
        self.sample_file = sample_file
        self.train_stride = train_stride
        #: per split: video -> per-frame values of every frame (scoring covers all of them)
        self.videos: dict[str, dict[str, np.ndarray]] = {}

    @property
    def image_root(self) -> Path:
        if self.image_root_override:
            return Path(self.image_root_override).expanduser()
        return self.root / vocab.MTL_IMAGE_DIR

    def resolved_test_image_root(self) -> Path:
        return self.image_root

    def split_folder(self, split: str) -> Path:
        return find_task_folder(self.root, self.task) / SPLIT_FOLDERS[split]

    def resolved_sample_file(self) -> Path:
        return Path(self.sample_file) if self.sample_file else find_sample_file(self.root, self.task)

    def _frames(self, split: str) -> MtlAnnotations:
        stride = self.train_stride if split == "train" else 1
        annotations, videos = read_split_frames(self.split_folder(split), self.task,
                                                self.image_root, stride)
        self.videos[split] = videos
        return annotations

    @cached_property
    def label_stats(self) -> MtlLabelStats | None:  # type: ignore[override]
        try:
            folder = self.split_folder("train")
        except FormatError:
            return None
        if not folder.is_dir():
            return None
        labels = MtlLabels.from_annotations(self._frames("train"), self.tasks)
        return MtlLabelStats(labels.expression, labels.aus, int(labels.va_mask.sum()))

    def read_annotations(self, path: Path, split: str) -> MtlAnnotations:
        """The frames of ``split`` (``path`` is its folder), labelled and with a crop."""
        return self._frames(split)

    def setup(self, stage: str | None = None) -> None:
        from abaw.data.transforms import eval_transforms, train_transforms

        evaluate = eval_transforms(self.img_size)
        if stage in (None, "fit"):
            train = train_transforms(self.img_size, self.augment)
            self.datasets["train"] = self._annotated(self.split_folder("train"), "train", train)
        if stage in (None, "fit", "validate"):
            self.datasets["val"] = self._annotated(self.split_folder("val"), "val", evaluate)
        if stage == "test":
            self.datasets["test"] = self._annotated(self.split_folder("test"), "test", evaluate)
        if stage == "predict":
            self._setup_predict(evaluate)

    def _setup_predict(self, transform: Any) -> None:
        image_root = self.image_root
        if self.predict_split == "val":
            self._frames("val")
            wanted = all_frames(self.videos["val"])
            self.predict_test_list = None
        else:
            wanted = read_sample_file(self.resolved_sample_file(), self.task)
            self.predict_test_list = list(wanted)
        crops: dict[str, set[str]] = {}
        images = []
        for location in dict.fromkeys(wanted):
            video, _, name = location.rpartition("/")
            if video not in crops:
                crops[video] = _crops(image_root, video)
            if name in crops[video]:
                images.append(location)
        if not images:
            raise AbawError(f"{image_root}: none of the {len(wanted)} frames to predict has a "
                            "crop (is data.image_root the cropped_aligned folder?)")
        self.predict_images = images
        self.datasets["predict"] = MtlImageListDataset(
            image_root, images, transform, self.img_size, self.missing_test_images,
            self._decoded(image_root, images, self.predict_split))
