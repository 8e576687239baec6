"""A tiny LSD dataset in the official layout, for the LSD data and training tests.

Train tree: ``ANGRER`` (the organisers' spelling) and the other five folders, Sadness the
majority as in the real synthetic set; validation tree: uses the ``ANGER`` alias. Images are
small noisy JPEGs whose mean colour depends on the class, so a model can learn a little in a
few steps. Also a flat test folder, its test list (with a repeated entry) and the test truth,
and occlusion CSVs with extra columns (as ``abaw lsd hands`` writes them).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from abaw.formats.writers import write_lsd_labels, write_lsd_test_list
from abaw.vocab import LSD_FOLDERS, LSD_TEST_LIST, LSD_TRAIN_DIR, LSD_VAL_DIR

#: images per class in the training tree (Sadness the majority, Fear the rarest)
TRAIN_COUNTS = (2, 2, 1, 3, 8, 2)
VAL_COUNTS = (1, 1, 1, 1, 2, 1)
TEST_SIZE = 5
TEST_DIR = "test_set"
TEST_LABELS = "test_set_labels.txt"


def class_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy image whose mean colour encodes ``label`` (BGR, uint8)."""
    base = np.array([40 + 35 * label, 200 - 30 * label, 120], dtype=np.float64)
    image = rng.normal(0.0, 12.0, (size, size, 3)) + base
    return np.clip(image, 0, 255).astype(np.uint8)


def _tree(root: Path, counts: tuple[int, ...], folders: tuple[str, ...], size: int,
          rng: np.random.Generator) -> list[str]:
    names = []
    for label, (folder, count) in enumerate(zip(folders, counts)):
        for i in range(count):
            relative = f"{folder}/img{i:02d}.jpg"
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), class_image(label, size, rng))
            names.append(relative)
    return names


def make_lsd_data(root: Path, size: int = 40, seed: int = 0) -> Path:
    """Write the LSD layout under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    _tree(root / LSD_TRAIN_DIR, TRAIN_COUNTS, LSD_FOLDERS, size, rng)
    val_folders = ("ANGER", *LSD_FOLDERS[1:])
    _tree(root / LSD_VAL_DIR, VAL_COUNTS, val_folders, size, rng)
    test_dir = root / TEST_DIR
    test_dir.mkdir(parents=True, exist_ok=True)
    labels = [i % 6 for i in range(TEST_SIZE)]
    names = [f"{i}.jpg" for i in range(TEST_SIZE)]
    for name, label in zip(names, labels):
        assert cv2.imwrite(str(test_dir / name), class_image(label, size, rng))
    write_lsd_test_list(root / LSD_TEST_LIST, [*names, names[1]])  # a repeated entry
    write_lsd_labels(root / TEST_LABELS, names, labels)
    return root


def write_occlusion_csv(path: Path, flags: dict[str, int]) -> Path:
    """An ``abaw lsd hands``-style CSV (extra columns are ignored by the reader)."""
    lines = ["image,hand,score,x0,y0,x1,y1,face_overlap"]
    lines += [f"{name},{hand},0.9,1,2,3,4,0.5" for name, hand in flags.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
