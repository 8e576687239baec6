"""The LSD decision rule that uses hand occlusion at prediction time (pure numpy).

A face covered by a hand loses the mouth or the eyes, so the plain expression classifier is
least reliable exactly there. Given, per face, the main head's class probabilities ``probs``
(N, 6), the probability that a hand covers the face ``occlusion`` (N,) and, optionally, the
probabilities of an expression head trained on occluded faces only ``occluded_probs`` (N, 6),
an :class:`OcclusionRule` returns corrected (N, 6) probabilities, each row summing to 1:

- ``"none"`` — the main head's probabilities unchanged (the baseline row of the ablation);
- ``"separate_head"`` — faces with ``occlusion > threshold`` take the occluded-face head's
  probabilities; with ``blend=True`` every face instead takes the mixture
  ``(1 - o)·probs + o·occluded_probs`` (a soft switch, no threshold);
- ``"reweight"`` — faces with ``occlusion > threshold`` get ``probs · class_weights``,
  renormalised. The weights are a label-shift correction estimated on the occluded
  validation faces by :func:`estimate_occluded_weights`: the true class frequency there
  divided by the model's mean predicted probability there, so a class the model
  under-predicts on occluded faces is pushed up. ``blend=True`` applies the weights with
  exponent ``o`` (``probs · w**o``), i.e. fully for a sure occlusion, not at all for none.

The fitted rule is a small JSON artefact (:meth:`OcclusionRule.save` / :meth:`load`), so the
numbers used at prediction time are the ones estimated on validation, never pasted into code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from abaw.errors import ConfigError, FormatError
from abaw.fileio import atomic_write_text, is_device
from abaw.vocab import NUM_LSD_CLASSES

__all__ = ["OCCLUSION_RULES", "OcclusionRule", "estimate_occluded_weights"]

RuleName = Literal["none", "separate_head", "reweight"]
OCCLUSION_RULES: tuple[str, ...] = ("none", "separate_head", "reweight")


def _probabilities(values: object, name: str, rows: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != NUM_LSD_CLASSES:
        raise ConfigError(f"{name} must have shape (N, {NUM_LSD_CLASSES}), got {array.shape}")
    if rows is not None and array.shape[0] != rows:
        raise ConfigError(f"{name} has {array.shape[0]} rows, expected {rows}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ConfigError(f"{name} must hold finite, non-negative probabilities")
    return array


def _normalise(probs: np.ndarray) -> np.ndarray:
    total = probs.sum(axis=1, keepdims=True)
    # a row of zeros (all mass removed by zero weights) falls back to uniform, not NaN
    uniform = np.full_like(probs, 1.0 / probs.shape[1])
    return np.where(total > 0, probs / np.where(total > 0, total, 1.0), uniform)


def estimate_occluded_weights(
    probs: object, labels: object, occluded: object, smoothing: float = 1.0
) -> np.ndarray:
    """Per-class label-shift weights for occluded faces, estimated on labelled validation faces.

    ``w_c = (n_c + s) / (Σ_i p_ic + s)`` over the faces with ``occluded == 1`` (rows with
    ``occluded`` 0 or -1 = unknown are ignored): the true count of class ``c`` over the sum of
    the predicted probability of ``c``. Both terms carry the same additive smoothing ``s``, so
    a class seen and predicted equally often gets weight 1, and with no occluded face at all
    every weight is exactly 1 (the rule then changes nothing).
    """
    probs = _probabilities(probs, "probs")
    labels = np.asarray(labels, dtype=np.int64).ravel()
    occluded = np.asarray(occluded).ravel()
    if labels.shape[0] != probs.shape[0] or occluded.shape[0] != probs.shape[0]:
        raise ConfigError(
            f"probs, labels and occluded must have the same length "
            f"({probs.shape[0]}, {labels.shape[0]}, {occluded.shape[0]})"
        )
    if smoothing <= 0:
        raise ConfigError(f"smoothing must be > 0, got {smoothing}")
    mask = (occluded == 1) & (labels >= 0)
    if labels[mask].size and labels[mask].max() >= NUM_LSD_CLASSES:
        raise ConfigError(f"labels must lie in 0..{NUM_LSD_CLASSES - 1}")
    true_counts = np.bincount(labels[mask], minlength=NUM_LSD_CLASSES).astype(np.float64)
    predicted = probs[mask].sum(axis=0)
    return (true_counts + smoothing) / (predicted + smoothing)


@dataclass
class OcclusionRule:
    """A configured decision rule; see the module docstring for what each ``rule`` does.

    ``threshold`` is the occlusion probability above which a face counts as occluded (hard
    mode); ``class_weights`` (6 floats) is required by ``"reweight"``.
    """

    rule: RuleName = "none"
    threshold: float = 0.5
    blend: bool = False
    class_weights: list[float] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.rule not in OCCLUSION_RULES:
            raise ConfigError(f"unknown occlusion rule {self.rule!r}; choose one of {OCCLUSION_RULES}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"occlusion threshold must lie in [0, 1], got {self.threshold}")
        if self.class_weights is not None:
            weights = np.asarray(self.class_weights, dtype=np.float64)
            if weights.shape != (NUM_LSD_CLASSES,) or not np.isfinite(weights).all() or (
                weights < 0
            ).any():
                raise ConfigError(
                    f"class_weights must be {NUM_LSD_CLASSES} finite non-negative numbers"
                )
            self.class_weights = [float(w) for w in weights]
        if self.rule == "reweight" and self.class_weights is None:
            raise ConfigError(
                "the 'reweight' occlusion rule needs class_weights "
                "(estimate them with estimate_occluded_weights on validation)"
            )

    def apply(
        self,
        probs: object,
        occlusion: object | None = None,
        occluded_probs: object | None = None,
    ) -> np.ndarray:
        """Corrected class probabilities, shape (N, 6), each row summing to 1."""
        probs = _probabilities(probs, "probs")
        if self.rule == "none":
            return _normalise(probs)
        if occlusion is None:
            raise ConfigError(
                f"the {self.rule!r} occlusion rule needs occlusion probabilities "
                "(train with occlusion labels, or use rule 'none')"
            )
        occ = np.asarray(occlusion, dtype=np.float64).ravel()
        if occ.shape[0] != probs.shape[0]:
            raise ConfigError(f"occlusion has {occ.shape[0]} rows, expected {probs.shape[0]}")
        if not np.isfinite(occ).all() or (occ < 0).any() or (occ > 1).any():
            raise ConfigError("occlusion probabilities must lie in [0, 1]")
        occluded = occ > self.threshold
        if self.rule == "separate_head":
            if occluded_probs is None:
                raise ConfigError(
                    "the 'separate_head' rule needs the occluded-face head's probabilities "
                    "(train with occluded_expression_head: true)"
                )
            other = _probabilities(occluded_probs, "occluded_probs", rows=probs.shape[0])
            if self.blend:
                mixed = (1.0 - occ)[:, None] * probs + occ[:, None] * other
            else:
                mixed = np.where(occluded[:, None], other, probs)
            return _normalise(mixed)
        # reweight
        weights = np.asarray(self.class_weights, dtype=np.float64)[None, :]
        if self.blend:
            scaled = probs * np.power(weights, occ[:, None])
        else:
            scaled = np.where(occluded[:, None], probs * weights, probs)
        return _normalise(scaled)

    # --- the JSON artefact -------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the rule as JSON, atomically."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> OcclusionRule:
        """Read a rule written by :meth:`save`; a malformed file raises FormatError."""
        path = Path(path)
        if is_device(path):
            raise FormatError(path, None, "is a device, not a file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise FormatError(path, None, "occlusion rule file not found") from err
        except json.JSONDecodeError as err:
            raise FormatError(path, err.lineno, f"not valid JSON: {err.msg}") from err
        except UnicodeDecodeError:
            raise FormatError(path, None, "not UTF-8 text: is this a rule JSON file?") from None
        except RecursionError:
            raise FormatError(path, None, "not valid JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise FormatError(path, None, "expected a JSON object")
        unknown = set(data) - {"rule", "threshold", "blend", "class_weights"}
        if unknown:
            raise FormatError(path, None, f"unknown keys {sorted(unknown)}")
        try:
            return cls(**data)
        except (ConfigError, TypeError, ValueError) as err:
            raise FormatError(path, None, str(err)) from err
