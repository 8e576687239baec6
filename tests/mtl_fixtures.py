"""A tiny MTL dataset in the official layout, for the data / training / CLI tests.

Images are small random-noise JPEGs whose mean brightness encodes the valence label, so a
model can learn something in a few steps; rows are partially labelled on purpose (VA only,
expression only, AU only, all three), as in s-Aff-Wild2.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from abaw.formats.writers import write_mtl_annotations, write_mtl_test_list
from abaw.vocab import (
    AU_MISSING,
    EXPR_MISSING,
    MTL_IMAGE_DIR,
    MTL_TEST_LIST,
    MTL_TRAIN_FILE,
    MTL_VAL_FILE,
    NUM_AUS,
    VA_MISSING,
)

TEST_ANNOTATIONS = "test_set_annotations.txt"


def _images(root: Path, prefix: str, count: int, size: int, rng: np.random.Generator,
            valence: np.ndarray) -> list[str]:
    names = []
    for i in range(count):
        relative = f"{prefix}{i % 3}/{i + 1:05d}.jpg"
        level = int(127 + 100 * (valence[i] if valence[i] > VA_MISSING else 0.0))
        image = np.clip(rng.normal(level, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)
        names.append(relative)
    return names


def _labels(count: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    valence = rng.uniform(-1, 1, count).round(3)
    arousal = rng.uniform(-1, 1, count).round(3)
    expression = rng.integers(0, 8, count)
    aus = rng.integers(0, 2, (count, NUM_AUS))
    kind = np.arange(count) % 4  # 0: all labels, 1: VA only, 2: expression only, 3: AU only
    valence[kind >= 2] = VA_MISSING
    arousal[kind >= 2] = VA_MISSING
    expression[(kind == 1) | (kind == 3)] = EXPR_MISSING
    aus[(kind == 1) | (kind == 2)] = AU_MISSING
    return valence, arousal, expression, aus


def make_mtl_data(root: Path, n_train: int = 24, n_val: int = 12, n_test: int = 6,
                  size: int = 32, seed: int = 0) -> Path:
    """Write train/val annotation files, a test list (with a repeat), test truth and images."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for file, prefix, count in ((MTL_TRAIN_FILE, "train_video", n_train),
                                (MTL_VAL_FILE, "val_video", n_val)):
        v, a, e, au = _labels(count, rng)
        names = _images(root / MTL_IMAGE_DIR, prefix, count, size, rng, v)
        write_mtl_annotations(root / file, names, v, a, e, au)
    v, a, e, au = _labels(n_test, rng)
    names = _images(root / "test" / MTL_IMAGE_DIR, "test_video", n_test, size, rng, v)
    write_mtl_test_list(root / MTL_TEST_LIST, [*names, names[0]])  # a repeated entry
    write_mtl_annotations(root / TEST_ANNOTATIONS, names, v, a, e, au)
    return root
