"""Face-crop image loading that never crashes a run on a missing or corrupt file.

Conventions:

- images are decoded with OpenCV and returned as RGB ``uint8`` arrays of shape (H, W, 3);
- a user's copy of a dataset may lack some listed images or hold truncated JPEGs (detected by
  their missing end marker, :func:`is_truncated`, not only by a failed decode). Missing files
  are found once, up front (:func:`check_images`, an existence check, cheap even for 170k
  files); decode failures can only be seen when an image is loaded, so :func:`load_rgb`
  returns ``None`` for them and the dataset skips that sample (see
  :func:`abaw.data.loaders.collate_skip_unreadable`);
- every problem is reported **once**: one summary line (a count and the first few paths)
  through :mod:`logging`, the full list written to a text file in the run directory
  (:meth:`ImageProblems.write`);
- for a *test* list nothing can be skipped (the submission needs a row per entry): the policy
  is a choice, ``"error"`` (refuse, naming the missing files; the default, since a silent
  grey-image prediction can cost leaderboard points unnoticed) or ``"grey"`` (predict from
  a mid-grey image and warn loudly).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from abaw.errors import AbawError
from abaw.fileio import atomic_write_text

log = logging.getLogger(__name__)

#: How many paths the one-line summary names before "...".
SUMMARY_PATHS = 5
#: What to do when a test-list image is missing: refuse, or predict from a grey image.
MissingTestPolicy = Literal["error", "grey"]
#: Value of the stand-in image for a missing test image (mid-grey: no face evidence at all).
GREY_LEVEL = 128

# OpenCV prints its own decoder warnings (libjpeg "Premature end of JPEG file") to stderr;
# the summary below replaces them.
try:  # pragma: no cover - depends on the OpenCV build
    cv2.setLogLevel(0)
except AttributeError:  # pragma: no cover
    pass


#: JPEG markers: start of scan, end of image; PNG's closing IEND chunk (type and CRC)
_JPEG_SOS, _JPEG_EOI = b"\xff\xda", b"\xff\xd9"
_PNG_SIGNATURE, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def is_truncated(data: bytes) -> bool:
    """True when JPEG or PNG bytes end before the image does.

    OpenCV decodes the first part of a truncated JPEG and returns an image (the rest grey),
    so a cut file would be used silently. A complete JPEG has an end-of-image marker after its
    last start-of-scan (in entropy-coded data 0xFF is always followed by 0x00 or a restart
    marker, so the pair cannot occur by chance); a complete PNG has its ``IEND`` chunk. Other
    formats are left to the decoder (False).
    """
    if data.startswith(b"\xff\xd8"):
        sos = data.rfind(_JPEG_SOS)
        return sos < 0 or data.find(_JPEG_EOI, sos) < 0
    if data.startswith(_PNG_SIGNATURE):
        return data.rfind(_PNG_IEND) < 0
    return False


def load_rgb(path: str | Path) -> np.ndarray | None:
    """Decode an image file to an RGB ``uint8`` (H, W, 3) array; ``None`` if it cannot be read.

    ``None`` covers a missing file, a file OpenCV cannot decode (not an image) and a truncated
    JPEG or PNG (:func:`is_truncated`; OpenCV would return its first part); grey-scale files
    are expanded to three channels.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data or is_truncated(data):
        return None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def grey_image(size: int) -> np.ndarray:
    """A mid-grey RGB image of ``size`` x ``size`` (the stand-in for a missing test image)."""
    return np.full((size, size, 3), GREY_LEVEL, dtype=np.uint8)


@dataclass
class ImageProblems:
    """The missing (not on disk) and unreadable (failed to decode) images of one split."""

    split: str
    root: str
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.unreadable)

    def summary(self) -> str:
        """One line: the counts and the first few paths (empty string when all is well)."""
        if not self.count:
            return ""
        parts = []
        for kind, paths in (("missing", self.missing), ("unreadable", self.unreadable)):
            if paths:
                shown = ", ".join(paths[:SUMMARY_PATHS]) + (", ..." if len(paths) > SUMMARY_PATHS else "")
                parts.append(f"{len(paths)} {kind} ({shown})")
        return f"{self.split}: {' and '.join(parts)} image(s) under {self.root}"

    def report(self, run_dir: str | Path | None = None, *, skipped: bool = True) -> Path | None:
        """Log the summary once (a warning) and write the full list into ``run_dir``.

        Returns the list file's path (``None`` when nothing is wrong or there is no run dir).
        """
        if not self.count:
            return None
        written = self.write(run_dir) if run_dir is not None else None
        tail = "; skipped" if skipped else ""
        where = f"; full list in {written}" if written is not None else ""
        log.warning("%s%s%s", self.summary(), tail, where)
        return written

    def write(self, run_dir: str | Path) -> Path:
        """Write ``<run_dir>/image_problems_<split>.txt``: one ``<kind>\\t<path>`` per line."""
        lines = [f"missing\t{p}\n" for p in self.missing]
        lines += [f"unreadable\t{p}\n" for p in self.unreadable]
        return atomic_write_text(Path(run_dir) / f"image_problems_{self.split}.txt", lines)


def check_images(root: str | Path, images: Sequence[str], split: str) -> ImageProblems:
    """Existence check of every distinct relative path in ``images`` under ``root``.

    Duplicated entries (an image listed twice) are checked and reported once.
    """
    root = Path(root)
    problems = ImageProblems(split=split, root=str(root))
    for relative in dict.fromkeys(str(p) for p in images):
        if not (root / relative).is_file():
            problems.missing.append(relative)
    return problems


def refuse_missing_test_images(problems: ImageProblems) -> None:
    """Raise a clear :class:`AbawError` listing the missing test images (policy ``"error"``)."""
    if problems.count:
        raise AbawError(
            f"{problems.summary()}: every test-list entry needs a prediction, so nothing can be "
            "skipped. Restore the files, or set data.missing_test_images=grey to predict them "
            "from a grey image."
        )
