"""The temporal option of the per-video tracks (``--temporal gru``).

After the frame model is trained: the backbone's features of every frame with a crop are
computed **once** per split (cached as ``.npy`` under ``<run>/temporal/``, keyed by the
checkpoint and the frame list), a :class:`abaw.models.temporal.TemporalHead` is trained on
windows of consecutive frames of the training videos with the MTL losses of the task (the
frame model's class weights / AU ``pos_weight``), the epoch with the best official
validation score is kept (saved as ``<run>/temporal/gru.pt``), and each video is then
predicted whole. Predictions go through the track's writer, so frames without a crop are
filled from the nearest predicted frame of the same video, exactly as for the frame model.

A sequence is a video's frames that have a crop, in frame order; frames without a face are
skipped (their neighbours become adjacent), as the filling does.

Test-time augmentation (:func:`predict_saved`, the last-mile table's TTA row for a GRU run):
the backbone's features of each view (``hflip``: the crops mirrored) go through the head,
and the head's outputs are averaged in probability space with those of the plain features.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from abaw import vocab
from abaw.errors import AbawError
from abaw.fileio import atomic_write_bytes
from abaw.models.losses import au_loss, ccc_loss, expression_loss
from abaw.models.temporal import TemporalHead

log = logging.getLogger(__name__)

#: training windows (frames) and their step; videos are predicted whole
WINDOW, STEP = 64, 32


@dataclass
class Sequences:
    """Per video: the frames with a crop (locations, in frame order) and their labels."""

    videos: list[str]
    locations: list[list[str]]
    labels: list[np.ndarray] | None = None

    @property
    def images(self) -> list[str]:
        return [loc for locs in self.locations for loc in locs]


def _crop_frames(image_root: Path, video: str, frames: int | None = None) -> list[int]:
    """0-based frame indices of ``video`` that have a crop (``<k+1 :05d>.jpg``)."""
    from abaw.data.per_video import _crops

    found = []
    for name in _crops(image_root, video):
        stem = name.rsplit(".", 1)[0]
        if name.endswith(".jpg") and stem.isdigit() and stem.isascii():
            k = int(stem) - 1
            if k >= 0 and (frames is None or k < frames):
                found.append(k)
    return sorted(found)


def split_sequences(folder: Path, task: str, image_root: Path) -> Sequences:
    """Every video of an annotated split folder: crop frames and their labels (sentinels kept)."""
    from abaw.formats.readers import frame_image, read_per_video_annotation

    files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
    seq = Sequences([], [], [])
    for path in files:
        values = read_per_video_annotation(path, task)
        frames = _crop_frames(image_root, path.stem, len(values))
        if frames:
            seq.videos.append(path.stem)
            seq.locations.append([frame_image(path.stem, k + 1) for k in frames])
            seq.labels.append(values[frames])
    return seq


def sample_sequences(sample: list[str], image_root: Path) -> Sequences:
    """The videos of a sample file: their frames that have a crop (no labels)."""
    from abaw.data.per_video import parse_location
    from abaw.formats.readers import frame_image

    seq = Sequences([], [])
    for video in dict.fromkeys(parse_location(loc)[0] for loc in sample):
        frames = _crop_frames(image_root, video)
        if frames:
            seq.videos.append(video)
            seq.locations.append([frame_image(video, k + 1) for k in frames])
    return seq


@torch.no_grad()
def backbone_features(module: Any, datamodule: Any, image_root: Path, images: list[str],
                      cache: Path, batch: int = 256, view: str | None = None) -> np.ndarray:
    """``(N, D)`` float32 backbone features of ``images`` (eval preprocessing, then the
    test-time ``view`` of :data:`abaw.training.base.TTA_VIEWS` if given), cached at
    ``cache`` (reused when it exists)."""
    from abaw.data.cache import decode_split
    from abaw.training.base import TTA_VIEWS

    if cache.is_file():
        features = np.load(cache)
        if len(features) == len(images):
            return features
    decoded = decode_split(image_root, images, datamodule.img_size, datamodule.cache_dir,
                           label=cache.stem)
    if not decoded.ok.all():
        bad = images[int(np.flatnonzero(~decoded.ok)[0])]
        raise AbawError(f"{image_root / bad}: unreadable crop; no feature for it")
    backbone = module.net.backbone
    was_training = backbone.training
    backbone.eval()
    device = module.device
    out = []
    for start in range(0, len(images), batch):
        pixels = torch.from_numpy(decoded.pixels[start:start + batch]).permute(0, 3, 1, 2)
        x = datamodule.batch_augment(pixels.contiguous().to(device), train=False)
        if view is not None:
            x = TTA_VIEWS[view](x)
        out.append(backbone(x).float().cpu().numpy())
    backbone.train(was_training)
    features = np.concatenate(out).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, features)
    atomic_write_bytes(cache, buffer.getvalue())
    return features


def _per_video(features: np.ndarray, seq: Sequences) -> list[np.ndarray]:
    bounds = np.cumsum([0] + [len(locs) for locs in seq.locations])
    return [features[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def cached_features(cli: Any, checkpoint: Path, folder: Path, split: str, seq: Sequences,
                    view: str | None = None) -> list[np.ndarray]:
    """Per video of ``seq``, the backbone's features of its frames, cached under ``folder``
    as ``features-<split>[-<view>]-<key>.npy`` (key: the checkpoint, its time, the image
    size and the frames)."""
    dm = cli.datamodule
    key = hashlib.sha256("\n".join([str(checkpoint.resolve()), str(checkpoint.stat().st_mtime_ns),
                                    str(dm.img_size), *seq.images]).encode()).hexdigest()[:16]
    cache = folder / f"features-{split}{'' if view is None else '-' + view}-{key}.npy"
    return _per_video(backbone_features(cli.model, dm, dm.image_root, seq.images, cache,
                                        view=view), seq)


def _sentinel(task: str) -> float:
    return vocab.VA_MISSING if task == "va" else -1


def _loss(task: str, out: torch.Tensor, target: torch.Tensor, module: Any) -> torch.Tensor:
    out, target = out.reshape(-1, out.shape[-1]), target.reshape(-1, *target.shape[2:])
    if task == "va":
        return ccc_loss(out, target.float(), (target > vocab.VA_MISSING).all(dim=1))
    if task == "expr":
        weight = module.expr_class_weight if module.hparams.expr_class_weights else None
        return expression_loss(out, target.long(), weight)
    weight = module.au_pos_weight if module.hparams.au_pos_weight else None
    return au_loss(out, target.long(), weight)


def _windows(features: list[np.ndarray]) -> list[tuple[int, int, int]]:
    """(video, start, end) of the training windows: WINDOW frames every STEP, the last one
    ending at the video's end; a shorter video is one window."""
    spans = []
    for v, f in enumerate(features):
        starts = list(range(0, max(1, len(f) - WINDOW + 1), STEP))
        if len(f) > WINDOW and starts[-1] != len(f) - WINDOW:
            starts.append(len(f) - WINDOW)
        spans += [(v, s, min(len(f), s + WINDOW)) for s in starts]
    return spans


def _batch(task: str, spans: list[tuple[int, int, int]], features: list[np.ndarray],
           labels: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(b - a for _, a, b in spans)
    dim = features[0].shape[1]
    x = np.zeros((len(spans), length, dim), np.float32)
    shape = labels[0].shape[1:]
    y = np.full((len(spans), length, *shape), _sentinel(task),
                np.float32 if task == "va" else np.int64)
    for i, (v, a, b) in enumerate(spans):
        x[i, : b - a] = features[v][a:b]
        y[i, : b - a] = labels[v][a:b]
    return torch.from_numpy(x), torch.from_numpy(y)


@torch.no_grad()
def predict_arrays(head: TemporalHead, features: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The frame model's prediction arrays (``va``, ``expr_prob``, ``au_prob``; neutral values
    for the other tasks) for every frame of every video, videos predicted whole."""
    head.eval()
    outs = [head(torch.from_numpy(f)[None])[head.task][0] for f in features]
    out = torch.cat(outs).double()
    n = out.shape[0]
    arrays = {"va": np.zeros((n, 2)),
              "expr_prob": np.full((n, vocab.NUM_EXPRESSIONS), 1.0 / vocab.NUM_EXPRESSIONS),
              "au_prob": np.zeros((n, vocab.NUM_AUS))}
    if head.task == "va":
        arrays["va"] = out.clamp(-1, 1).numpy()
    elif head.task == "expr":
        arrays["expr_prob"] = torch.softmax(out, dim=1).numpy()
    else:
        arrays["au_prob"] = torch.sigmoid(out).numpy()
    return arrays


def train_head(task: str, module: Any, train: tuple[list[np.ndarray], list[np.ndarray]],
               score: Any, epochs: int = 30, batch: int = 16, lr: float = 1e-3,
               seed: int = 0) -> tuple[TemporalHead, list[float]]:
    """Train a head on windows of the training videos; keep the epoch whose ``score(head)``
    (the validation score) is best. Returns the head and the score per epoch."""
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    # the head is tiny: one thread; several threads spin on every small op and, with other
    # jobs on the cores, made 30 epochs take over 20 minutes instead of about a minute
    torch.set_num_threads(1)
    try:
        return _train(task, module, train, score, epochs, batch, lr, seed)
    finally:
        torch.set_num_threads(threads)


def _train(task: str, module: Any, train: tuple[list[np.ndarray], list[np.ndarray]],
           score: Any, epochs: int, batch: int, lr: float, seed: int
           ) -> tuple[TemporalHead, list[float]]:
    features, labels = train
    head = TemporalHead(features[0].shape[1], task)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    spans = _windows(features)
    rng = np.random.default_rng(seed)
    history, best, best_state = [], -np.inf, None
    for _ in range(epochs):
        head.train()
        order = rng.permutation(len(spans))
        for start in range(0, len(order), batch):
            x, y = _batch(task, [spans[i] for i in order[start:start + batch]], features, labels)
            loss = _loss(task, head(x)[task], y, module)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        value = float(score(head))
        history.append(value)
        if value > best:
            best, best_state = value, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    return head, history


class TemporalRun:
    """The temporal option inside a per-video run (:mod:`abaw.tracks.per_video`)."""

    def __init__(self, run: Any, cli: Any, checkpoint: Path) -> None:
        self.run, self.cli, self.checkpoint = run, cli, Path(checkpoint)
        self.task = run.challenge.name
        self.folder = run.run_dir / "temporal"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.head_path = self.folder / "gru.pt"
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        cli.model.load_state_dict(state)
        self.head: TemporalHead | None = None

    def _features(self, split: str, seq: Sequences) -> list[np.ndarray]:
        return cached_features(self.cli, self.checkpoint, self.folder, split, seq)

    def fit_and_predict_validation(self) -> Any:
        from abaw.scoring import per_video_array_score as task_score
        from abaw.training.writer import Predictions

        dm, run = self.cli.datamodule, self.run
        steps = run.steps
        with steps.step("temporal head: backbone features of train/validation (cached)"):
            train_seq = split_sequences(dm.split_folder("train"), self.task, dm.image_root)
            val_seq = split_sequences(dm.split_folder("val"), self.task, dm.image_root)
            train_f = self._features("train", train_seq)
            val_f = self._features("val", val_seq)
        val_truth = np.concatenate(val_seq.labels)

        def score(head: TemporalHead) -> float:
            values = task_score(self.task, val_truth, predict_arrays(head, val_f))
            return values["score" if self.task == "va" else "f1"]

        with steps.step("temporal head: train the GRU"):
            start = time.perf_counter()
            self.head, history = train_head(self.task, self.cli.model, (train_f, train_seq.labels),
                                            score)
            torch.save(self.head.state_dict(), self.head_path)
            print(f"GRU head: {len(history)} epochs in {time.perf_counter() - start:.1f} s, "
                  f"validation (crop frames) per epoch {np.round(history, 3).tolist()}; "
                  f"kept epoch {int(np.argmax(history)) + 1} → {self.head_path}")
        run.report["temporal_head"] = {"epochs": len(history), "history": history,
                                       "kept_epoch": int(np.argmax(history)) + 1,
                                       "path": str(self.head_path)}
        arrays = predict_arrays(self.head, val_f)
        images = val_seq.images
        return Predictions(images, arrays, {}, images, np.arange(len(images)), {})

    def predict_test(self, post: Path | None) -> Any:
        from abaw.formats.readers import read_sample_file

        dm, writer = self.cli.datamodule, self.cli.writer
        sample = read_sample_file(self.run.extras["sample"], self.task)
        seq = sample_sequences(sample, dm.image_root)
        if not seq.videos:
            raise AbawError(f"{dm.image_root}: no frame of the sample file has a crop")
        arrays = predict_arrays(self.head, self._features("test", seq))
        return writer.finish(seq.images, arrays, writer.load_postprocess(post), sample,
                             self.run.sub_dir)


def predict_saved(cli: Any, checkpoint: Path, head_path: Path, task: str, sample_file: Path,
                  views: tuple[str, ...] = ()) -> dict[str, tuple[list[str], dict]]:
    """A saved GRU run (frame checkpoint and head) predicting its validation crop frames
    (``"val"``) and the sample file's crop frames (``"test"``) again: per split, the images
    and the raw arrays, averaged over the plain features and those of each test-time view.
    Features are cached beside the head."""
    from abaw.formats.readers import read_sample_file

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    cli.model.load_state_dict(state)
    dm = cli.datamodule
    head_state = torch.load(head_path, map_location="cpu", weights_only=True)
    sequences = {"val": split_sequences(dm.split_folder("val"), task, dm.image_root),
                 "test": sample_sequences(read_sample_file(sample_file, task), dm.image_root)}
    out = {}
    for split, seq in sequences.items():
        views_arrays = []
        for view in (None, *views):
            features = cached_features(cli, checkpoint, head_path.parent, split, seq, view)
            head = TemporalHead(features[0].shape[1], task)
            head.load_state_dict(head_state)
            views_arrays.append(predict_arrays(head, features))
        out[split] = (seq.images, {k: np.mean([a[k] for a in views_arrays], axis=0)
                                   for k in views_arrays[0]})
    return out
