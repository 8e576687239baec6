"""Callbacks: :class:`MtlPredictionWriter` turns ``abaw predict`` output into files.

At the end of prediction it gathers every rank's rows (DDP), puts them back in dataset order
by their ``index``, and writes, in ``output_dir`` (default: the run's log directory):

- ``predictions.npz`` — ``images``, ``va`` (N, 2), ``expr_prob`` (N, 8), ``au_prob`` (N, 12),
  the probabilities needed to fit AU thresholds (:mod:`abaw.postprocess`);
- ``submission.txt`` — the official MTL submission (``predict_split="test"``: one line per
  test-list entry, list order, repeats kept) or, for ``predict_split="val"``, the same
  format over the validation images, which ``abaw score`` can score directly.

AU decisions use the per-AU thresholds of ``postprocess`` (a JSON from
:func:`abaw.postprocess.save_postprocess`); by default the file beside the checkpoint being
evaluated (``<ckpt>.postprocess.json``) when it exists, else 0.5.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from abaw.errors import AbawError
from abaw.fileio import atomic_write_bytes, check_writable_folder
from abaw.formats.writers import write_mtl_submission
from abaw.postprocess import apply_au_thresholds, default_postprocess_path, load_postprocess

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.npz"
SUBMISSION_FILE = "submission.txt"
KEYS = ("va", "expr_prob", "au_prob")


class OutputDirCheck:
    """Mixin of the prediction writers: before any image is predicted, check that
    ``output_dir`` (when set) is a folder files can be written into (an error now, not after
    the whole prediction)."""

    output_dir: str | None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "predict" and self.output_dir and trainer.is_global_zero:
            check_writable_folder(self.output_dir)


class MtlPredictionWriter(OutputDirCheck, BasePredictionWriter):
    """Write ``predictions.npz`` and ``submission.txt`` after ``trainer.predict``.

    Args:
        output_dir: folder for the two files (default: the trainer's log directory).
        postprocess: AU-threshold JSON; default ``<ckpt_path>.postprocess.json`` if present.
        au_threshold: the AU threshold when no post-processing file is used.
    """

    def __init__(self, output_dir: str | None = None, postprocess: str | None = None,
                 au_threshold: float = 0.5) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self.postprocess = postprocess
        self.au_threshold = au_threshold
        #: paths written by the last prediction run
        self.written: dict[str, Path] = {}

    def _thresholds(self, trainer: pl.Trainer) -> np.ndarray | float:
        path = Path(self.postprocess) if self.postprocess else None
        if path is None and trainer.ckpt_path:
            candidate = default_postprocess_path(trainer.ckpt_path)
            path = candidate if candidate.is_file() else None
        if path is None:
            log.info("AU decisions at threshold %.3g", self.au_threshold)
            return self.au_threshold
        log.info("AU decisions with the per-AU thresholds of %s", path)
        return load_postprocess(path)["au_thresholds"]

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           predictions: Any, batch_indices: Any) -> None:
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        if not batches:
            raise AbawError("prediction produced no rows")
        local = {k: torch.cat([b[k] for b in batches]) for k in (*KEYS, "index")}
        if trainer.world_size > 1:
            local = _gather_rows(pl_module, local)
        if not trainer.is_global_zero:
            return
        arrays = {k: v.detach().cpu().numpy() for k, v in local.items()}
        # restore dataset order; a padding sampler may repeat rows: keep the first of each
        kept = arrays["index"] >= 0
        arrays = {k: v[kept] for k, v in arrays.items()}
        index, first = np.unique(arrays.pop("index"), return_index=True)
        arrays = {k: v[first].astype(np.float64) for k, v in arrays.items()}
        datamodule = trainer.datamodule
        images = [datamodule.predict_images[i] for i in index]
        if len(images) != len(datamodule.predict_images):
            raise AbawError(f"predicted {len(images)} of {len(datamodule.predict_images)} images "
                            "(some could not be read); no submission written")
        self.written = self.write(self._output_dir(trainer), images, arrays,
                                  self._thresholds(trainer), datamodule.predict_test_list)

    def _output_dir(self, trainer: pl.Trainer) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        return Path(trainer.log_dir or trainer.default_root_dir)

    @staticmethod
    def write(output_dir: Path, images: list[str], arrays: dict[str, np.ndarray],
              thresholds: np.ndarray | float, test_list: list[str] | None) -> dict[str, Path]:
        """Write the two files; with ``test_list``, rows follow it (repeats re-use a prediction)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=np.asarray(images, dtype=str), **arrays)
        npz = atomic_write_bytes(output_dir / PREDICTIONS_FILE, buffer.getvalue())
        rows = np.arange(len(images))
        names = images
        if test_list is not None:
            position = {name: i for i, name in enumerate(images)}
            rows = np.asarray([position[name] for name in test_list], dtype=np.int64)
            names = list(test_list)
        va = arrays["va"][rows]
        submission = write_mtl_submission(
            output_dir / SUBMISSION_FILE, names, va[:, 0], va[:, 1],
            arrays["expr_prob"][rows].argmax(axis=1),
            apply_au_thresholds(arrays["au_prob"][rows], thresholds),
            test_list=test_list,
        )
        log.info("wrote %s (%d rows) and %s", submission, len(names), npz)
        return {"predictions": npz, "submission": submission}


def _gather_rows(pl_module: pl.LightningModule,
                 local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every rank's rows on every rank. Prediction samplers do not pad, so ranks may hold
    different row counts: pad to the largest with ``index = -1`` rows, gather, flatten."""
    count = torch.tensor(len(local["index"]), device=local["index"].device)
    largest = int(pl_module.all_gather(count).max())
    gathered = {}
    for key, value in local.items():
        pad = largest - value.shape[0]
        filler = -1 if key == "index" else 0
        padded = torch.cat([value, value.new_full((pad, *value.shape[1:]), filler)])
        gathered[key] = pl_module.all_gather(padded).reshape(-1, *value.shape[1:])
    return gathered
