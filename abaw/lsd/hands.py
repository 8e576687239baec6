"""Hand-over-face detection with MediaPipe's HandLandmarker (Tasks API, IMAGE mode).

Per image: whether a hand is found, the hand's box, a confidence and how much of the face the
hand covers. The models are the wheel-shipped ones from :mod:`abaw.assets`
(``mediapipe-hand-landmarker`` and ``mediapipe-face-detector``); nothing is downloaded.

Conventions:

- Boxes are normalised ``(x0, y0, x1, y1)`` in [0, 1] of the *input* image. A hand box is the
  bounding box of the hand's 21 landmarks (clipped to the image).
- ``score`` is MediaPipe's handedness confidence of the reported hand (the Tasks API exposes
  no separate presence score; the palm-detection threshold is ``min_confidence``).
- ``face_overlap`` is the fraction of the face box's area covered by the hand box. The face
  box is the MediaPipe face detector's best detection; when it finds no face (a hand over the
  face often hides it), :data:`CENTRAL_FACE_BOX` stands in — in an aligned face crop the face
  fills that central region. With several hands, the one covering most of the face is kept.
- Small crops are prepared before detection: upscaled so the longer side is ``upscale``
  pixels (the palm detector works at 192 px and the hand-landmark model at 224 px), then padded
  by ``pad`` (a fraction of the side, grey) so a hand cut by the crop border still shows its
  palm context. Box coordinates are mapped back to the input image.
- Results are cached by content (input bytes + settings + the models' sha256) like the
  super-resolution outputs; the CSV (``image,hand,score,x0,y0,x1,y1,face_overlap``, image =
  path relative to the source folder) is written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from abaw import assets
from abaw.errors import ConfigError
from abaw.fileio import atomic_write_text
from abaw.lsd.cache import ResultCache, content_key
from abaw.lsd.superres import decode, list_images

HAND_ASSET = "mediapipe-hand-landmarker"
FACE_ASSET = "mediapipe-face-detector"
#: Where the face is in an aligned face crop when the detector finds none (x0, y0, x1, y1).
CENTRAL_FACE_BOX = (0.15, 0.15, 0.85, 0.9)
CSV_HEADER = ("image", "hand", "score", "x0", "y0", "x1", "y1", "face_overlap")
PAD_GREY = 128
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class DetectorSettings:
    """Everything that changes a detection (part of the cache key)."""

    min_confidence: float = 0.3
    upscale: int = 256
    pad: float = 0.25
    min_face_confidence: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_confidence", "min_face_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if self.upscale < 0 or not 0.0 <= self.pad <= 1.0:
            raise ConfigError(f"upscale must be >= 0 and pad in [0, 1], got {self.upscale} and {self.pad}")


@dataclass
class HandResult:
    """One image's detection (boxes normalised to the input image)."""

    hand: bool
    score: float = 0.0
    box: Box | None = None
    face_box: Box = CENTRAL_FACE_BOX
    face_found: bool = False
    face_overlap: float = 0.0


@dataclass
class HandsReport:
    """A folder run: rows in CSV order, cache hits and failures (path, reason)."""

    rows: list[tuple[str, HandResult]] = field(default_factory=list)
    cached: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def covered_fraction(face: Box, hand: Box) -> float:
    """Fraction of ``face``'s area inside ``hand`` (0 when the face box is empty)."""
    area = box_area(face)
    if area == 0:
        return 0.0
    inter = (max(face[0], hand[0]), max(face[1], hand[1]), min(face[2], hand[2]), min(face[3], hand[3]))
    return box_area(inter) / area


def prepare(image: np.ndarray, upscale: int, pad: float) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Upscale (longer side -> ``upscale``, never down) and pad an RGB image.

    Returns the prepared image and the placement ``(left, top, width, height)`` of the input
    inside it, in prepared-image pixels, to map normalised boxes back.
    """
    from PIL import Image

    height, width = image.shape[:2]
    factor = max(1.0, upscale / max(height, width))
    new_w, new_h = round(width * factor), round(height * factor)
    if (new_w, new_h) != (width, height):
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BICUBIC))
    border = round(pad * max(new_w, new_h))
    if border:
        image = np.pad(image, ((border, border), (border, border), (0, 0)), constant_values=PAD_GREY)
    return np.ascontiguousarray(image), (border, border, new_w, new_h)


def _to_input(box_px: Box, placement: tuple[float, float, float, float]) -> Box:
    """Prepared-image pixel box -> input-normalised box, clipped to [0, 1]."""
    left, top, width, height = placement
    x0, y0, x1, y1 = ((box_px[0] - left) / width, (box_px[1] - top) / height,
                      (box_px[2] - left) / width, (box_px[3] - top) / height)
    return tuple(float(min(1.0, max(0.0, v))) for v in (x0, y0, x1, y1))  # type: ignore[return-value]


@contextlib.contextmanager
def _native_logs_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while MediaPipe's C++ runs: it prints a dozen INFO
    lines per detector (LiteRT, XNNPACK) that GLOG_minloglevel does not reach. Errors still
    arrive as Python exceptions. ``ABAW_DEBUG=1`` keeps the logs."""
    if os.environ.get("ABAW_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class HandDetector:
    """MediaPipe hand landmarker + face detector; use as a context manager (closes both)."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ info logs
        self.settings = settings or DetectorSettings()
        with _native_logs_silenced():
            self._hands, self._faces = self._create()

    def _create(self):
        from mediapipe.tasks.python import BaseOptions, vision

        hands = vision.HandLandmarker.create_from_options(vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(assets.fetch(HAND_ASSET))),
            running_mode=vision.RunningMode.IMAGE,
            num_hands=2,
            min_hand_detection_confidence=self.settings.min_confidence,
            min_hand_presence_confidence=self.settings.min_confidence,
        ))
        faces = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(assets.fetch(FACE_ASSET))),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=self.settings.min_face_confidence,
        ))
        return hands, faces

    def close(self) -> None:
        with _native_logs_silenced():
            self._hands.close()
            self._faces.close()

    def __enter__(self) -> HandDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detect(self, image: np.ndarray) -> HandResult:
        """Detect hands and the face in an RGB uint8 ``H x W x 3`` image."""
        import mediapipe as mp

        prepared, placement = prepare(image, self.settings.upscale, self.settings.pad)
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=prepared)
        ph, pw = prepared.shape[:2]
        with _native_logs_silenced():
            faces = self._faces.detect(mp_image).detections
            found = self._hands.detect(mp_image)
        face_box, face_found = CENTRAL_FACE_BOX, False
        if faces:
            best = max(faces, key=lambda d: d.categories[0].score)
            bb = best.bounding_box
            face_box = _to_input((bb.origin_x, bb.origin_y, bb.origin_x + bb.width, bb.origin_y + bb.height), placement)
            face_found = box_area(face_box) > 0
            if not face_found:
                face_box = CENTRAL_FACE_BOX
        best_result = HandResult(hand=False, face_box=face_box, face_found=face_found)
        for landmarks, handedness in zip(found.hand_landmarks, found.handedness):
            xs = [lm.x * pw for lm in landmarks]
            ys = [lm.y * ph for lm in landmarks]
            box = _to_input((min(xs), min(ys), max(xs), max(ys)), placement)
            if box_area(box) == 0:  # landmarks entirely in the padding: not on the image
                continue
            overlap = covered_fraction(face_box, box)
            candidate = HandResult(True, float(handedness[0].score), box, face_box, face_found, overlap)
            if not best_result.hand or (overlap, candidate.score) > (best_result.face_overlap, best_result.score):
                best_result = candidate
        return best_result


def _settings_key(settings: DetectorSettings) -> tuple:
    return (tuple(sorted(asdict(settings).items())), assets.pinned_sha256(HAND_ASSET), assets.pinned_sha256(FACE_ASSET))


def _encode_result(result: HandResult) -> bytes:
    return json.dumps(asdict(result), sort_keys=True).encode()


def _decode_result(data: bytes) -> HandResult:
    raw = json.loads(data)
    raw["box"] = tuple(raw["box"]) if raw["box"] is not None else None
    raw["face_box"] = tuple(raw["face_box"])
    return HandResult(**raw)


def detect_folder(
    src: str | Path,
    settings: DetectorSettings | None = None,
    cache_root: str | Path | None = None,
    progress: bool = True,
) -> HandsReport:
    """Detect hands in every image under ``src``, using and filling the result cache."""
    from tqdm import tqdm

    src = Path(src)
    if not src.is_dir():
        raise ConfigError(f"{src}: not a folder of images")
    settings = settings or DetectorSettings()
    cache = ResultCache("hands", cache_root)
    setting_key = _settings_key(settings)
    report = HandsReport()
    detector: HandDetector | None = None
    try:
        for path in tqdm(list_images(src), desc="hands", unit="img", disable=not progress, file=sys.stderr):
            relative = path.relative_to(src).as_posix()
            try:
                data = path.read_bytes()
            except OSError as err:  # unreadable: listed, like an undecodable image
                report.failed.append((path, f"cannot read: {err.strerror or err}"))
                continue
            key = content_key(data, "hands", setting_key)
            cached = cache.get(key, ".json")
            if cached is not None:
                report.rows.append((relative, _decode_result(cached)))
                report.cached += 1
                continue
            try:
                image = decode(data)
            except ValueError as err:
                report.failed.append((path, str(err)))
                continue
            if detector is None:  # built lazily: a fully cached run never loads MediaPipe
                detector = HandDetector(settings)
            result = detector.detect(image)
            cache.put(key, _encode_result(result), ".json")
            report.rows.append((relative, result))
    finally:
        if detector is not None:
            detector.close()
    return report


def format_csv(rows: Sequence[tuple[str, HandResult]]) -> str:
    """The hands CSV: one row per image, box fields empty when no hand was found."""
    lines = [",".join(CSV_HEADER)]
    for image, result in rows:
        if "," in image or "\n" in image:
            image = '"' + image.replace('"', '""') + '"'
        box = [f"{v:.4f}" for v in result.box] if result.box else ["", "", "", ""]
        lines.append(",".join([image, str(int(result.hand)), f"{result.score:.4f}", *box, f"{result.face_overlap:.4f}"]))
    return "\n".join(lines) + "\n"


def write_csv(path: str | Path, rows: Sequence[tuple[str, HandResult]]) -> Path:
    return atomic_write_text(path, format_csv(rows))
