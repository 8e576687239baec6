"""The prediction writer: ``trainer.predict`` output → arrays in memory, ``predictions.npz`` and
the submission file. One writer for every challenge; a challenge subclass only says how its
arrays become submission rows.

What :class:`PredictionWriter` does for every challenge, in this order:

1. **gather** every rank's rows (DDP): ranks may hold different row counts (Lightning's
   predict sampler does not pad), so each rank pads to the largest count with ``index = -1``
   rows before ``all_gather``, and the padding is dropped afterwards;
2. **de-duplicate and order**: rows are put back in dataset order by their ``index``; an index
   seen twice (a padding sampler repeats rows) keeps its first row;
3. **post-process**: the challenge's fitted post-processing (a JSON artefact) is loaded from
   ``postprocess`` or, by default, from ``<ckpt_path><POSTPROCESS_SUFFIX>`` beside the
   checkpoint being evaluated, when that file exists (``auto_postprocess=False`` turns the
   default off: raw decisions); the saved arrays stay the raw ones;
4. **expand** to the official test list (``predict_split="test"``): one row per list entry, in
   list order, repeats re-using their image's prediction; ``"val"`` keeps the dataset rows;
5. **write** ``predictions.npz`` (the distinct images and every array) and ``submission.txt``
   into ``output_dir`` (default: the trainer's log directory); ``output_dir=""`` writes
   nothing. The result stays in memory as :attr:`PredictionWriter.result` (rank 0).

Test-time augmentation: ``tta`` (e.g. ``submission.tta: [hflip]``) names extra views of
each image (:data:`abaw.training.base.TTA_VIEWS`); the module averages its outputs over the
original and those views (probabilities and VA alike) before anything is written.

A subclass sets ``POSTPROCESS_SUFFIX`` and implements :meth:`~PredictionWriter.load_postprocess`,
:meth:`~PredictionWriter.decide` (arrays + post-processing → the submission's columns, one
row per image) and :meth:`~PredictionWriter.write_submission`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from abaw.errors import AbawError, ConfigError
from abaw.fileio import check_writable_folder
from abaw.formats.predictions import save_predictions
from abaw.formats.readers import read_occlusion_csv
from abaw.formats.writers import (
    write_lsd_submission,
    write_mtl_submission,
    write_per_video_submission,
)
from abaw.lsd.occlusion import OcclusionRule
from abaw.postprocess import POSTPROCESS_SUFFIX, PostProcess
from abaw.training.base import TTA_VIEWS
from abaw.vocab import NUM_AUS, PREDICTIONS_FILE, SUBMISSION_FILE

log = logging.getLogger(__name__)

__all__ = ["LsdPredictionWriter", "MtlPredictionWriter", "PerVideoPredictionWriter",
           "PredictionWriter", "Predictions"]


@dataclass
class Predictions:
    """What one ``trainer.predict`` produced, gathered and ordered (rank 0).

    ``images``: the distinct predicted images in dataset order; ``arrays``: float64 arrays
    with one row per image (the model's outputs); ``decided``: the submission's columns per
    image after post-processing; ``names``: the submission's rows (the test list with repeats,
    or ``images``); ``rows``: for each submission row, its row in ``images``; ``written``: the
    files written (``predictions``, ``submission``), empty when nothing was written.
    """

    images: list[str]
    arrays: dict[str, np.ndarray]
    decided: dict[str, np.ndarray]
    names: list[str]
    rows: np.ndarray
    written: dict[str, Path]


class PredictionWriter(BasePredictionWriter):
    """Gather, order, post-process, expand and write (see the module docstring).

    Args:
        output_dir: folder for ``predictions.npz`` and ``submission.txt``; default the
            trainer's log directory; ``""`` = keep the result in memory only.
        postprocess: post-processing JSON; default ``<ckpt_path><POSTPROCESS_SUFFIX>`` when
            it exists.
        auto_postprocess: look for the JSON beside the checkpoint when ``postprocess`` is unset.
        tta: test-time augmentations averaged with the original image (``[hflip]``; none
            by default).
    """

    POSTPROCESS_SUFFIX: str = ""

    def __init__(self, output_dir: str | None = None, postprocess: str | None = None,
                 auto_postprocess: bool = True, tta: list[str] | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self.postprocess = postprocess
        self.auto_postprocess = auto_postprocess
        self.tta = tta
        #: the last prediction run's result (rank 0 only)
        self.result: Predictions | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Before any image is predicted, check that ``output_dir`` (when set) is a folder
        files can be written into: an error now, not after the whole prediction."""
        if stage == "predict" and self.output_dir and trainer.is_global_zero:
            check_writable_folder(self.output_dir)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Hand the test-time augmentations to the module's ``predict_step``."""
        tta = tuple(self.tta or ())
        unknown = [name for name in tta if name not in TTA_VIEWS]
        if unknown:
            raise ConfigError(f"submission.tta: unknown view {unknown[0]!r} (known: "
                              f"{list(TTA_VIEWS)})")
        pl_module.predict_tta = tta
        if tta:
            log.info("test-time augmentation: the mean over the image and %s", ", ".join(tta))

    # -- what a challenge defines -----------------------------------------------------------------
    def load_postprocess(self, path: Path | None) -> Any:
        """The post-processing read from ``path`` (``None``: the challenge's default)."""
        raise NotImplementedError

    def decide(self, images: list[str], arrays: dict[str, np.ndarray],
               post: Any) -> dict[str, np.ndarray]:
        """The submission's columns, one row per image (may add arrays to ``arrays``)."""
        raise NotImplementedError

    def write_submission(self, path: Path, names: list[str], columns: dict[str, np.ndarray],
                         test_list: list[str] | None) -> Path:
        raise NotImplementedError

    # -- the shared part --------------------------------------------------------------------------
    def postprocess_path(self, ckpt_path: str | Path | None) -> Path | None:
        """The post-processing file this run uses (explicit, beside the checkpoint, or none)."""
        if self.postprocess:
            return Path(self.postprocess)
        if self.auto_postprocess and ckpt_path:
            candidate = Path(ckpt_path).with_name(Path(ckpt_path).name + self.POSTPROCESS_SUFFIX)
            if candidate.is_file():
                return candidate
        return None

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           predictions: Any, batch_indices: Any) -> None:
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        batches = [b for b in batches if b is not None]  # batches of unreadable images only
        if not batches:
            raise AbawError("prediction produced no rows")
        keys = [k for k in batches[0] if k != "index"]
        local = {k: torch.cat([b[k] for b in batches]) for k in (*keys, "index")}
        if trainer.world_size > 1:
            local = gather_rows(pl_module, local)
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        images, arrays = order_rows({k: v.detach().cpu().numpy() for k, v in local.items()},
                                    datamodule.predict_images)
        post = self.load_postprocess(self.postprocess_path(trainer.ckpt_path))
        self.result = self.finish(images, arrays, post, datamodule.predict_test_list,
                                  self._output_dir(trainer))

    def finish(self, images: list[str], arrays: dict[str, np.ndarray], post: Any,
               test_list: list[str] | None, output_dir: Path | None) -> Predictions:
        """Decide, expand to ``test_list`` and (with ``output_dir``) write both files."""
        decided = self.decide(images, arrays, post)
        rows = np.arange(len(images))
        names = list(images)
        if test_list is not None:
            rows = self.expand(images, test_list)
            names = list(test_list)
        written: dict[str, Path] = {}
        if output_dir is not None:
            written["predictions"] = save_predictions(output_dir / PREDICTIONS_FILE, images,
                                                      arrays)
            written["submission"] = self.write_submission(
                output_dir / SUBMISSION_FILE, names, {k: v[rows] for k, v in decided.items()},
                test_list)
            log.info("wrote %s (%d rows) and %s", written["submission"], len(names),
                     written["predictions"])
        return Predictions(images, arrays, decided, names, rows, written)

    def expand(self, images: list[str], test_list: list[str]) -> np.ndarray:
        """For each test-list entry, its row in ``images`` (every entry was predicted)."""
        position = {name: i for i, name in enumerate(images)}
        return np.asarray([position[name] for name in test_list], dtype=np.int64)

    def _output_dir(self, trainer: pl.Trainer) -> Path | None:
        if self.output_dir == "":
            return None
        if self.output_dir:
            return Path(self.output_dir)
        return Path(trainer.log_dir or trainer.default_root_dir)


def gather_rows(pl_module: pl.LightningModule,
                local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every rank's rows on every rank. Ranks may hold different row counts: pad to the
    largest with ``index = -1`` rows (zeros elsewhere), gather, flatten."""
    count = torch.tensor(len(local["index"]), device=local["index"].device)
    largest = int(pl_module.all_gather(count).max())
    gathered = {}
    for key, value in local.items():
        pad = largest - value.shape[0]
        filler = -1 if key == "index" else 0
        padded = torch.cat([value, value.new_full((pad, *value.shape[1:]), filler)])
        gathered[key] = pl_module.all_gather(padded).reshape(-1, *value.shape[1:])
    return gathered


def order_rows(arrays: dict[str, np.ndarray],
               all_images: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Drop padding (``index < 0``), keep the first row of each index, sort by index; float64.

    Every image of the dataset must have a row (an unreadable image means no submission).
    """
    kept = arrays["index"] >= 0
    arrays = {k: v[kept] for k, v in arrays.items()}
    index, first = np.unique(arrays.pop("index"), return_index=True)
    if len(index) != len(all_images):
        raise AbawError(f"predicted {len(index)} of {len(all_images)} images (some could not "
                        "be read); no submission written")
    return [all_images[i] for i in index], {k: v[first].astype(np.float64)
                                            for k, v in arrays.items()}


class MtlPredictionWriter(PredictionWriter):
    """MTL: the decisions of :class:`abaw.postprocess.PostProcess`: VA (smoothed within each
    video), expression = argmax of the log-probabilities plus the per-class biases, AU = 1
    where the (smoothed) ``au_prob >= threshold``.

    The fitted numbers come from the post-processing JSON (:func:`abaw.postprocess.save_postprocess`);
    without one: no smoothing, plain argmax, ``au_threshold`` for every AU.

    Args:
        au_threshold: the AU threshold when no post-processing file is used.
    """

    POSTPROCESS_SUFFIX = POSTPROCESS_SUFFIX

    def __init__(self, output_dir: str | None = None, postprocess: str | None = None,
                 auto_postprocess: bool = True, tta: list[str] | None = None,
                 au_threshold: float = 0.5) -> None:
        super().__init__(output_dir, postprocess, auto_postprocess, tta)
        self.au_threshold = au_threshold

    def load_postprocess(self, path: Path | None) -> PostProcess:
        if path is None:
            log.info("AU decisions at threshold %.3g", self.au_threshold)
            return PostProcess(np.full(NUM_AUS, float(self.au_threshold)))
        post = PostProcess.load(path)
        log.info("decisions with the post-processing of %s (smoothing sigma %s)", path,
                 post.smoothing or "none")
        return post

    def decide(self, images: list[str], arrays: dict[str, np.ndarray],
               post: PostProcess) -> dict[str, np.ndarray]:
        return post.decide(images, arrays)

    def write_submission(self, path: Path, names: list[str], columns: dict[str, np.ndarray],
                         test_list: list[str] | None) -> Path:
        va = columns["va"]
        return write_mtl_submission(path, names, va[:, 0], va[:, 1], columns["expression"],
                                    columns["aus"], test_list=test_list)


class PerVideoPredictionWriter(MtlPredictionWriter):
    """A per-video task (5th ABAW on): one file over every frame of the sample file.

    The frames with a crop are predicted and decided first, with the post-processing of the
    JSON as for MTL (:class:`abaw.postprocess.PostProcess`: the task's smoothing by frame
    number within each video over the predicted frames, then the expression biases or the
    per-AU thresholds; without a JSON: VA as predicted, argmax, AUs at ``au_threshold``);
    only then does every other sample row take the decision of the nearest predicted frame
    of the same video (:func:`abaw.data.per_video.fill_rows`).

    Args:
        task: ``va``, ``expr`` or ``au`` (linked from ``data.task``).
    """

    def __init__(self, output_dir: str | None = None, postprocess: str | None = None,
                 auto_postprocess: bool = True, tta: list[str] | None = None,
                 au_threshold: float = 0.5, task: str = "va") -> None:
        super().__init__(output_dir, postprocess, auto_postprocess, tta, au_threshold)
        self.task = task

    def decide(self, images: list[str], arrays: dict[str, np.ndarray],
               post: PostProcess) -> dict[str, np.ndarray]:
        decided = super().decide(images, arrays, post)
        key = {"va": "va", "expr": "expression", "au": "aus"}[self.task]
        return {"values": decided[key]}

    def expand(self, images: list[str], test_list: list[str]) -> np.ndarray:
        from abaw.data.per_video import fill_rows

        rows = fill_rows(images, test_list, "the sample file")
        log.info("%d of %d sample rows predicted from their own crop, %d filled from the "
                 "nearest predicted frame of their video", len(set(images) & set(test_list)),
                 len(test_list), len(test_list) - len(set(images) & set(test_list)))
        return rows

    def write_submission(self, path: Path, names: list[str], columns: dict[str, np.ndarray],
                         test_list: list[str] | None) -> Path:
        return write_per_video_submission(path, self.task, names, columns["values"],
                                          sample=test_list)


class LsdPredictionWriter(PredictionWriter):
    """LSD: the class of each image is the argmax after the occlusion decision rule.

    The rule is the post-processing JSON (:meth:`abaw.lsd.occlusion.OcclusionRule.save`;
    none = the main head). Its occlusion input is the model's occlusion head or, with
    ``occlusion_csv``, a hand detector's flags for the predicted images (``abaw lsd hands``
    output, names relative to the predicted folder; an image it does not name counts as not
    occluded). ``predictions.npz`` also holds ``final_prob``, the probabilities after the rule.

    Args:
        occlusion_csv: detector flags replacing the occlusion head's probabilities.
    """

    POSTPROCESS_SUFFIX = ".occlusion_rule.json"

    def __init__(self, output_dir: str | None = None, postprocess: str | None = None,
                 auto_postprocess: bool = True, tta: list[str] | None = None,
                 occlusion_csv: str | None = None) -> None:
        super().__init__(output_dir, postprocess, auto_postprocess, tta)
        self.occlusion_csv = occlusion_csv

    def load_postprocess(self, path: Path | None) -> OcclusionRule:
        return OcclusionRule.load(path) if path is not None else OcclusionRule()

    def decide(self, images: list[str], arrays: dict[str, np.ndarray],
               post: OcclusionRule) -> dict[str, np.ndarray]:
        if self.occlusion_csv:
            flags = read_occlusion_csv(self.occlusion_csv)
            arrays["occlusion_prob"] = np.asarray([float(flags.get(n, 0)) for n in images])
            log.info("occlusion from %s: %d of %d predicted images flagged", self.occlusion_csv,
                     int(arrays["occlusion_prob"].sum()), len(images))
        arrays["final_prob"] = post.apply(arrays["expr_prob"], arrays.get("occlusion_prob"),
                                          arrays.get("expr_prob_occluded"))
        log.info("LSD classes after the occlusion rule %r", post.rule)
        return {"expression": arrays["final_prob"].argmax(axis=1)}

    def write_submission(self, path: Path, names: list[str], columns: dict[str, np.ndarray],
                         test_list: list[str] | None) -> Path:
        return write_lsd_submission(path, names, columns["expression"], test_list=test_list)
