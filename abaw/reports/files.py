"""A finished run's files, read back: what ``report.html`` and ``abaw compare`` are built from.

A run of :mod:`abaw.runner` named ``<run>`` of track ``<track>`` leaves

- ``submissions/<track>/<run>/report.json`` — scores, post-processing, timings (required:
  a folder without it is not a finished run);
- ``submissions/<track>/<run>/validation_predictions.npz`` — the validation predictions with
  raw scores (:data:`VALIDATION_PREDICTIONS`, written by :func:`save_validation`), keyed by
  image name (``images``) and, where the truth was readable, the truth in ``truth_*`` arrays
  row for row (MTL: ``truth_va`` ``(N, 2)`` with -5 where absent, ``truth_expression`` with
  -1, ``truth_aus`` ``(N, 12)`` with -1; LSD: ``truth_expression``);
- ``runs/<track>/<run>/logs/version_N/metrics.csv`` — the Lightning CSV logs, one version per
  (resumed) fit, read in version order and concatenated;
- ``runs/<track>/<run>/logs/version_N/config.yaml`` — the resolved config of each fit (the
  highest version holding one is the config of the run).

Where the run folder is: ``report.json``'s ``run_dir``, else the folder above its
``checkpoint``, else ``runs/<track>/<run>`` beside ``submissions/``; relative paths in the
report are relative to the folder the run ran in (the one holding ``submissions/``). Runs
that predate :data:`VALIDATION_PREDICTIONS` fall back to ``<run_dir>/validation/
predictions.npz`` with the truth read again from the report's ``data`` folder.

Anything but ``report.json`` may be missing; :attr:`RunFiles.missing` says why for each.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abaw import vocab
from abaw.errors import AbawError, FormatError
from abaw.formats.predictions import TRUTH_PREFIX, VALIDATION_PREDICTIONS_FILE

REPORT_FILE = "report.json"
HTML_FILE = "report.html"
#: the truth's image names (its row order, repeats kept) in a saved validation file
TRUTH_IMAGES = TRUTH_PREFIX + "images"
#: the saved validation predictions (with their truth), beside ``report.json``
VALIDATION_PREDICTIONS = VALIDATION_PREDICTIONS_FILE

__all__ = ["HTML_FILE", "REPORT_FILE", "VALIDATION_PREDICTIONS", "RunFiles", "load_run",
           "read_report", "save_validation", "validation_truth"]


def report_path(given: str | Path) -> Path:
    """``report.json`` of a submission folder (or the file itself when given)."""
    path = Path(given)
    return path if path.suffix == ".json" else path / REPORT_FILE


def read_report(given: str | Path) -> dict[str, Any]:
    """The parsed ``report.json`` of a run folder; one-line errors naming the file."""
    path = report_path(given)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(path, None, "not found (is this a finished run's submission "
                                      "folder? report.json is written at the end of a run)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(path, None, f"cannot be read: {err}") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatError(path, err.lineno, f"not valid JSON: {err.msg} (column {err.colno})") from None
    if not isinstance(report, dict):
        raise FormatError(path, 1, f"not a JSON object (a {type(report).__name__})")
    return report


@dataclass
class RunFiles:
    """Everything readable about one finished run (see the module docstring)."""

    sub_dir: Path
    report: dict[str, Any]
    track: str
    run_dir: Path | None = None
    #: the checkpoint the test predictions came from, when it is still on disk
    checkpoint: Path | None = None
    #: the training logs, every version concatenated (pandas DataFrame), or None
    metrics: Any = None
    metrics_files: list[Path] = field(default_factory=list)
    config_file: Path | None = None
    config_text: str | None = None
    #: the validation predictions (``images``, raw scores, ``truth_*``), or None
    validation: dict[str, np.ndarray] | None = None
    validation_file: Path | None = None
    #: input name -> why it is missing ("metrics", "config", "validation", "truth")
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def postprocess_files(self) -> list[Path]:
        """The post-processing artefacts saved beside the checkpoint (``<ckpt>.*.json``)."""
        if self.checkpoint is None:
            return []
        return sorted(self.checkpoint.parent.glob(self.checkpoint.name + ".*.json"))

    @property
    def name(self) -> str:
        return str(self.report.get("run") or self.sub_dir.name)

    def truth(self, key: str) -> np.ndarray | None:
        if self.validation is None:
            return None
        return self.validation.get(TRUTH_PREFIX + key)


def _project_root(sub_dir: Path) -> Path:
    """The folder the run ran in: the one holding ``submissions/<track>/<run>``."""
    absolute = sub_dir.resolve()
    if len(absolute.parents) > 2 and absolute.parents[1].name == "submissions":
        return absolute.parents[2]
    return Path.cwd()


def _resolve(root: Path, value: str | Path) -> Path:
    path = Path(value)
    if path.is_absolute():
        return path
    return root / path if (root / path).exists() else path


def _track(sub_dir: Path, report: dict) -> str:
    if report.get("challenge"):
        return str(report["challenge"])
    return sub_dir.resolve().parent.name


def _run_dir(sub_dir: Path, report: dict, track: str) -> Path | None:
    root = _project_root(sub_dir)
    candidates = []
    if report.get("run_dir"):
        candidates.append(_resolve(root, report["run_dir"]))
    if report.get("checkpoint"):
        checkpoint = _resolve(root, report["checkpoint"])
        if checkpoint.parent.name == "checkpoints":
            candidates.append(checkpoint.parent.parent)
    candidates.append(root / "runs" / track / str(report.get("run") or sub_dir.name))
    return next((c for c in candidates if c.is_dir()), None)


def _versions(run_dir: Path, name: str) -> list[Path]:
    """``logs/version_N/<name>`` files in increasing N."""
    def number(path: Path) -> int:
        match = re.fullmatch(r"version_(\d+)", path.parent.name)
        return int(match.group(1)) if match else -1

    return sorted(run_dir.glob(f"logs/version_*/{name}"), key=number)


def read_metrics(files: list[Path]) -> Any:
    """The CSV logs concatenated in the given order (a DataFrame; empty files skipped)."""
    import pandas as pd

    frames = []
    for path in files:
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise FormatError(path, None, f"not a readable CSV log: {err}") from None
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def load_run(given: str | Path, arrays: bool = True) -> RunFiles:
    """Read a finished run from its submission folder (or its ``report.json``);
    ``arrays=False`` skips the training logs and the validation predictions."""
    path = report_path(given)
    report = read_report(path)
    sub_dir = path.parent
    track = _track(sub_dir, report)
    files = RunFiles(sub_dir, report, track, _run_dir(sub_dir, report, track))
    if report.get("checkpoint"):
        checkpoint = _resolve(_project_root(sub_dir), report["checkpoint"])
        files.checkpoint = checkpoint if checkpoint.is_file() else None
    if files.run_dir is None:
        files.missing["metrics"] = files.missing["config"] = (
            "the run's training folder (runs/<track>/<run>) was not found")
    else:
        files.metrics_files = _versions(files.run_dir, "metrics.csv")
        if arrays:
            files.metrics = read_metrics(files.metrics_files) if files.metrics_files else None
            if files.metrics is None:
                files.missing["metrics"] = f"no metrics.csv under {files.run_dir / 'logs'}"
        configs = _versions(files.run_dir, "config.yaml")
        if configs:
            files.config_file = configs[-1]
            files.config_text = configs[-1].read_text(encoding="utf-8")
        else:
            files.missing["config"] = f"no config.yaml under {files.run_dir / 'logs'}"
    if arrays:
        _load_validation(files)
    return files


def _load_validation(files: RunFiles) -> None:
    saved = files.sub_dir / VALIDATION_PREDICTIONS
    older = files.run_dir / "validation" / vocab.PREDICTIONS_FILE if files.run_dir else None
    source = saved if saved.is_file() else older if older and older.is_file() else None
    if source is None:
        files.missing["validation"] = f"no {VALIDATION_PREDICTIONS} in {files.sub_dir}"
        return
    arrays = _read_npz(source)
    if "images" not in arrays:
        raise FormatError(source, None, "holds no 'images' array")
    arrays = aligned_to_truth(arrays, source)
    if source == older:  # a run before the truth was saved with the predictions
        try:
            data_root = _resolve(_project_root(files.sub_dir), files.report["data"])
            arrays = validation_truth(files.track, data_root, arrays)
        except (AbawError, KeyError) as err:
            files.missing["truth"] = f"validation truth not readable: {err}"
    files.validation, files.validation_file = arrays, source
    if not any(k.startswith(TRUTH_PREFIX) for k in arrays):
        files.missing.setdefault("truth", f"{source} holds no validation truth")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise FormatError(path, None, f"not a readable .npz: {err}") from None


# --- the truth, row for row -------------------------------------------------------------------


def _mtl_truth(data_root: Path) -> tuple[Path, list[str], dict[str, np.ndarray]]:
    from abaw.formats.readers import read_mtl_annotations

    path = data_root / vocab.MTL_VAL_FILE
    truth = read_mtl_annotations(path)
    return path, list(truth.images), {"va": truth.va.astype(np.float64),
                                      "expression": truth.expression, "aus": truth.aus}


def _lsd_truth(data_root: Path) -> tuple[Path, list[str], dict[str, np.ndarray]]:
    from abaw.formats.readers import read_lsd_tree

    path = data_root / vocab.LSD_VAL_DIR
    truth = read_lsd_tree(path)
    return path, truth.paths, {"expression": truth.labels}


#: track -> reader of its validation truth: (file, image names, arrays row for row)
TRUTH_READERS = {"mtl": _mtl_truth, "lsd": _lsd_truth}


def validation_truth(track: str, data_root: Path,
                     arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` (``images`` and the predictions) put in the truth's row order, with the
    truth added as ``truth_*``; unchanged for a track without a truth reader."""
    from abaw.scoring import match_rows

    if track not in TRUTH_READERS:
        return arrays
    path, names, truth = TRUTH_READERS[track](data_root)
    rows = match_rows([str(n) for n in arrays["images"]], names, "the validation predictions",
                      path)
    out = {k: v[rows] for k, v in arrays.items()}
    out.update({TRUTH_PREFIX + k: np.asarray(v) for k, v in truth.items()})
    return out


def save_validation(sub_dir: Path, track: str, data_root: Path | None, images: list[str],
                    arrays: dict[str, np.ndarray]) -> Path:
    """Write :data:`VALIDATION_PREDICTIONS` into ``sub_dir``: ``images`` (distinct) and the raw
    arrays and, where ``data_root`` holds the track's validation truth, the truth in its own
    row order (repeats kept) as ``truth_images`` and ``truth_*``
    (:func:`aligned_to_truth` puts the predictions in that order)."""
    from abaw.formats.predictions import save_predictions

    # one row per image (a list with repeats, as the real validation file has, is predicted
    # once per distinct image: the repeats are copies)
    _, first = np.unique(np.asarray(images, dtype=str), return_index=True)
    first.sort()
    images = [images[i] for i in first]
    out = {k: np.asarray(v)[first] for k, v in arrays.items()}
    if data_root is not None and track in TRUTH_READERS:
        _path, names, truth = TRUTH_READERS[track](data_root)
        out[TRUTH_IMAGES] = np.asarray(names, dtype=str)
        out.update({TRUTH_PREFIX + k: np.asarray(v) for k, v in truth.items()})
    return save_predictions(sub_dir / VALIDATION_PREDICTIONS, list(images), out)


def aligned_to_truth(arrays: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """A saved validation file's predictions put in its truth's row order (``images`` becomes
    ``truth_images``); unchanged when it holds no truth."""
    from abaw.formats.predictions import SavedPredictions

    if TRUTH_IMAGES not in arrays:
        return arrays
    names = [str(n) for n in arrays[TRUTH_IMAGES]]
    rows = SavedPredictions([str(n) for n in arrays["images"]], {}).row_indices(
        names, f"{source}: the validation truth")
    out = {k: v[rows] for k, v in arrays.items() if not k.startswith(TRUTH_PREFIX)}
    out.update({k: v for k, v in arrays.items() if k.startswith(TRUTH_PREFIX)})
    out["images"] = out.pop(TRUTH_IMAGES)
    return out
