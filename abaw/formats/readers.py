"""Readers of the official ABAW files, each validated, with file and line in every error.

Conventions (see ``shared/ABAW_FORMATS.md``):

- line numbers are 1-based file lines (line 1 is the header); a malformed line raises
  :class:`~abaw.errors.FormatError` ``(path, line, what is wrong)``;
- reading is tolerant of what carries no information: ``\\r\\n`` endings, trailing empty
  lines, a missing final newline, a trailing comma on test-list rows; a blank line in the
  middle of a file is an error (it usually means a truncated or concatenated file);
- order and repeated rows are preserved exactly as in the file;
- large tables are parsed with pandas' C parser after a vectorised field-count check; only
  when that fails is the file scanned line by line, to name the first bad line;
- submissions are read strictly (through :mod:`abaw.formats.submissions`) because a scorer must
  see exactly what the server would; style problems (CRLF, no final newline) are tolerated.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from abaw import vocab
from abaw.errors import ConfigError, FormatError
from abaw.fileio import is_device

#: A decimal number as it may appear in an ABAW file (no NaN, no inf, no hex, no ``_``).
#: ASCII digits only (``\d`` would accept fullwidth and Arabic-Indic digits no parser reads).
NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
LSD_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


# --- text and table helpers ----------------------------------------------------------------------


def read_text(path: str | Path) -> str:
    """The whole file as UTF-8 text (a leading byte-order mark dropped).

    Raises :class:`FormatError` when the file is missing, a folder, empty, or not UTF-8.
    """
    path = Path(path)
    if is_device(path):
        raise FormatError(path, None, "is a device, not a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(path, None, "file not found") from None
    except IsADirectoryError:
        raise FormatError(path, None, "is a folder, not a file") from None
    except OSError as err:
        raise FormatError(path, None, f"cannot read: {err.strerror or err}") from None
    if not data:
        raise FormatError(path, None, "file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise FormatError(path, line, f"not UTF-8 text (byte 0x{data[err.start]:02x})") from None
    return text.removeprefix("\ufeff")


def split_lines(path: str | Path, text: str) -> list[str]:
    """File lines without their ``\\n`` / ``\\r\\n`` endings; trailing empty lines dropped.

    A blank line before the last non-blank line raises :class:`FormatError` with its number.
    """
    lines = text.split("\n")
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if "" in lines:
        raise FormatError(path, lines.index("") + 1, "blank line")
    return lines


def _num(value: float) -> str:
    """A parsed value exactly as read (shortest round-trip form): ``-5.0000001`` must not be
    shown as ``-5`` in a message saying it is not -5."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _shorten(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check_header(path: Path, lines: list[str], expected: Sequence[str], what: str) -> None:
    if not lines:
        raise FormatError(path, None, "file is empty")
    if lines[0] not in expected:
        raise FormatError(
            path, 1, f"{what} header is {_shorten(lines[0])}; expected {expected[0]!r}"
        )


def _check_field_counts(
    path: Path, lines: Sequence[str], first_line: int, fields: int
) -> None:
    """Every line must have exactly ``fields`` comma-separated fields."""
    counts = np.fromiter((line.count(",") for line in lines), dtype=np.int64, count=len(lines))
    bad = np.flatnonzero(counts != fields - 1)
    if bad.size:
        row = int(bad[0])
        raise FormatError(
            path, first_line + row,
            f"{int(counts[row]) + 1} field{'s' if counts[row] else ''}; expected {fields}",
        )


def _parse_table(
    path: Path,
    lines: Sequence[str],
    first_line: int,
    columns: Sequence[str],
    *,
    text_first: bool,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Parse comma-separated lines (field counts already checked) into numbers.

    Returns the first column as an object array when ``text_first`` (else ``None``) and the
    numeric columns as a float64 ``(N, k)`` array. A field that is not a decimal number raises
    :class:`FormatError` naming its line and column.
    """
    numeric = columns[1:] if text_first else columns
    if not lines:
        return (np.empty(0, dtype=object) if text_first else None), np.empty((0, len(numeric)))
    dtypes = {i: np.float64 for i in range(len(columns))}
    if text_first:
        dtypes[0] = object
    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(lines)),
            header=None,
            names=list(range(len(columns))),
            index_col=False,
            dtype=dtypes,
            na_filter=False,
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError) as err:
        _diagnose_numbers(path, lines, first_line, columns, text_first=text_first)
        raise FormatError(path, None, f"cannot parse: {err}") from None
    if len(frame) != len(lines):  # a carriage return inside a line splits it for the C parser
        for row, line in enumerate(lines):
            if "\r" in line:
                raise FormatError(path, first_line + row, "carriage return inside the line")
        raise FormatError(path, None, f"parsed {len(frame)} rows from {len(lines)} lines")
    offset = 1 if text_first else 0
    values = frame.iloc[:, offset:].to_numpy(dtype=np.float64)
    first = frame[0].to_numpy(dtype=object) if text_first else None
    _diagnose_numbers_fast(path, lines, first_line, columns, values, text_first=text_first)
    return first, values


def _diagnose_numbers(
    path: Path, lines: Sequence[str], first_line: int, columns: Sequence[str], *, text_first: bool
) -> None:
    """Slow path: raise for the first field that is not a decimal number."""
    start = 1 if text_first else 0
    for row, line in enumerate(lines):
        fields = line.split(",")
        for col in range(start, len(fields)):
            if NUMBER_RE.fullmatch(fields[col]) is None:
                raise FormatError(
                    path, first_line + row,
                    f"{columns[col]} {_shorten(fields[col])} is not a number",
                )


def _diagnose_numbers_fast(
    path: Path,
    lines: Sequence[str],
    first_line: int,
    columns: Sequence[str],
    values: np.ndarray,
    *,
    text_first: bool,
) -> None:
    """The C parser accepts ``inf`` and padded numbers: refuse non-finite values by line."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        field = lines[row].split(",")[col + (1 if text_first else 0)]
        name = columns[col + (1 if text_first else 0)]
        raise FormatError(path, first_line + row, f"{name} {_shorten(field)} is not a number")


def _first_violation(path: Path, line_numbers: np.ndarray, checks: list[tuple]) -> None:
    """Raise for the earliest row failing any check; ``checks`` are (row mask, message(row))."""
    rows = [int(np.flatnonzero(mask)[0]) for mask, _ in checks if mask.any()]
    if not rows:
        return
    row = min(rows)
    for mask, message in checks:
        if mask[row]:
            raise FormatError(path, int(line_numbers[row]), message(row))


def _not_integer(values: np.ndarray) -> np.ndarray:
    return values != np.round(values)


def _bad_int(values: np.ndarray, low: int, high: int) -> np.ndarray:
    return _not_integer(values) | (values < low) | (values > high)


# --- MTL (4th ABAW, s-Aff-Wild2) ------------------------------------------------------------


class MtlLabelMasks:
    """Label masks of row-aligned MTL arrays: ``va`` ``(N, 2)`` with the -5 sentinel,
    ``expression`` ``(N,)`` and ``aus`` ``(N, 12)`` with -1.

    Shared by :class:`MtlAnnotations` (a file's rows) and :class:`abaw.data.mtl.MtlLabels`
    (the labels a training run uses), so "labelled" means the same everywhere.
    """

    va: np.ndarray
    expression: np.ndarray
    aus: np.ndarray

    @property
    def va_mask(self) -> np.ndarray:
        """Rows whose valence and arousal are both labelled."""
        return (self.va > vocab.VA_MISSING).all(axis=1)

    @property
    def expr_mask(self) -> np.ndarray:
        return self.expression >= 0

    @property
    def au_mask(self) -> np.ndarray:
        """Per-AU validity ``(N, 12)``: an AU column may be labelled alone."""
        return self.aus >= 0


@dataclass(frozen=True, eq=False)
class MtlAnnotations(MtlLabelMasks):
    """One MTL annotation file, row for row (order and repeats as in the file).

    ``valence``/``arousal`` are -5 where absent, ``expression`` and ``aus`` -1 where absent.
    """

    path: Path
    images: np.ndarray  # object array of str, relative to cropped_aligned
    valence: np.ndarray  # float32 (N,)
    arousal: np.ndarray  # float32 (N,)
    expression: np.ndarray  # int64 (N,)
    aus: np.ndarray  # int64 (N, 12)
    line_numbers: np.ndarray  # int64 (N,), 1-based file line of each row

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def va(self) -> np.ndarray:
        """Valence and arousal stacked, float32 ``(N, 2)``."""
        return np.stack([self.valence, self.arousal], axis=1)

    @property
    def au_row_mask(self) -> np.ndarray:
        """Rows with all 12 AUs labelled (the official AU mask)."""
        return self.au_mask.all(axis=1)

    @property
    def mixed_rows(self) -> np.ndarray:
        """Line numbers of rows with only one of V/A, or only some of the AUs, labelled."""
        v = self.valence > vocab.VA_MISSING
        a = self.arousal > vocab.VA_MISSING
        labelled_aus = self.au_mask.sum(axis=1)
        mixed = (v != a) | ((labelled_aus > 0) & (labelled_aus < vocab.NUM_AUS))
        return self.line_numbers[mixed]

    @property
    def unlabelled_rows(self) -> np.ndarray:
        """Line numbers of rows with no task labelled at all (kept, but worth a warning)."""
        v = self.valence > vocab.VA_MISSING
        a = self.arousal > vocab.VA_MISSING
        any_label = v | a | self.expr_mask | self.au_mask.any(axis=1)
        return self.line_numbers[~any_label]

    def summary(self) -> dict[str, int]:
        """Counts: rows, distinct images, labelled rows per task, mixed and unlabelled rows."""
        return {
            "rows": len(self),
            "distinct_images": int(pd.unique(self.images).shape[0]),
            "va": int(self.va_mask.sum()),
            "expr": int(self.expr_mask.sum()),
            "au": int(self.au_row_mask.sum()),
            "mixed_rows": int(self.mixed_rows.shape[0]),
            "unlabelled_rows": int(self.unlabelled_rows.shape[0]),
        }


def read_mtl_annotations(path: str | Path) -> MtlAnnotations:
    """Read ``training_set_annotations.txt`` / ``validation_set_annotations.txt``.

    Line 1 is skipped (its literal text is not verified); data lines are parsed by position
    into the 16 fields of :data:`vocab.MTL_ANNOTATION_COLUMNS`. A million lines take a few
    seconds.
    """
    path = Path(path)
    lines = split_lines(path, read_text(path))
    if not lines:
        raise FormatError(path, None, "file is empty")
    body = lines[1:]
    columns = vocab.MTL_ANNOTATION_COLUMNS
    # line 1 is skipped unread, so a file without a header would silently lose a row
    first = lines[0].split(",")
    if len(first) == len(columns) and all(NUMBER_RE.fullmatch(f) for f in first[1:]):
        raise FormatError(path, 1, "line 1 is a data row; the file must start with a header line")
    _check_field_counts(path, body, 2, len(columns))
    images, values = _parse_table(path, body, 2, columns, text_first=True)
    line_numbers = np.arange(2, len(body) + 2, dtype=np.int64)
    v, a, e, au = values[:, 0], values[:, 1], values[:, 2], values[:, 3:]

    def va_bad(x: np.ndarray) -> np.ndarray:
        return ~(((x >= -1.0) & (x <= 1.0)) | (x == vocab.VA_MISSING))

    au_bad = _bad_int(au, vocab.AU_MISSING, 1)
    empty = np.fromiter((not name for name in images), dtype=bool, count=len(images))
    _first_violation(path, line_numbers, [
        (empty, lambda r: "empty image path"),
        (va_bad(v), lambda r: f"valence {_num(v[r])} is not in [-1, 1] or -5"),
        (va_bad(a), lambda r: f"arousal {_num(a[r])} is not in [-1, 1] or -5"),
        (_bad_int(e, vocab.EXPR_MISSING, vocab.NUM_EXPRESSIONS - 1),
         lambda r: f"expression {_num(e[r])} is not an integer in -1..{vocab.NUM_EXPRESSIONS - 1}"),
        (au_bad.any(axis=1),
         lambda r: (f"{vocab.AUS[int(np.flatnonzero(au_bad[r])[0])]} "
                    f"{_num(au[r][au_bad[r]][0])} is not -1, 0 or 1")),
    ])
    return MtlAnnotations(
        path=path,
        images=images,
        valence=v.astype(np.float32),
        arousal=a.astype(np.float32),
        expression=e.astype(np.int64),
        aus=au.astype(np.int64),
        line_numbers=line_numbers,
    )


def _read_name_list(path: str | Path, header: str, what: str) -> list[str]:
    """A header line, then one name a line (``name`` or ``name,``)."""
    path = Path(path)
    lines = [line.rstrip(" \t") for line in split_lines(path, read_text(path))]
    _check_header(path, lines, (header, header + ","), what)
    # spaces or tabs around a name are never part of an image path (a list edited by hand,
    # or exported with padding): without stripping, every submission row would be "unknown"
    names = [(line[:-1] if line.endswith(",") else line).strip(" \t") for line in lines[1:]]
    joined = "\0".join(names)
    if "," in joined or "\0\0" in joined or (names and (not names[0] or not names[-1])):
        for row, name in enumerate(names):
            if not name or "," in name:
                raise FormatError(
                    path, row + 2,
                    f"expected one image name (optionally with a trailing comma), "
                    f"got {_shorten(lines[row + 1])}",
                )
    return names


def read_mtl_test_list(path: str | Path) -> list[str]:
    """``MTL_Challenge_test_set_release.txt``: header, then one relative image path a line.

    Rows may carry a trailing comma (a later edition's spelling). Order and repeats kept.
    """
    return _read_name_list(path, vocab.MTL_TEST_LIST_HEADER, "MTL test list")


# --- LSD (4th ABAW) -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LsdSamples:
    """Images of an LSD class-folder tree; ``paths`` are relative to ``root``, sorted."""

    root: Path
    paths: list[str]
    labels: np.ndarray  # int64 (N,), class index 0..5

    def __len__(self) -> int:
        return len(self.paths)


def _lsd_folder_class(folder: str) -> int | None:
    if folder in vocab.LSD_FOLDER_TO_CLASS:
        return vocab.LSD_FOLDER_TO_CLASS[folder]
    return vocab.LSD_FOLDER_TO_CLASS.get(folder.upper())


def read_lsd_tree(root: str | Path) -> LsdSamples:
    """``training_set_synthetic_images`` / ``validation_set_real_images``: class folders.

    Folder names map through :data:`vocab.LSD_FOLDER_TO_CLASS` (``ANGRER``, ``ANGER``,
    ``ANGERE`` are class 0; case is ignored); an unknown folder is an error. Files with a
    .jpg/.jpeg/.png extension count; other files and hidden entries are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise FormatError(root, None, "LSD image folder not found")
    entries: list[tuple[str, int]] = []
    with os.scandir(root) as folders:
        for folder in folders:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            label = _lsd_folder_class(folder.name)
            if label is None:
                known = ", ".join(vocab.LSD_FOLDERS)
                raise FormatError(
                    Path(folder.path), None, f"unknown LSD class folder; expected one of {known}"
                )
            with os.scandir(folder.path) as files:
                for entry in files:
                    if (
                        not entry.name.startswith(".")
                        and entry.name.lower().endswith(LSD_IMAGE_EXTENSIONS)
                        and entry.is_file()
                    ):
                        entries.append((f"{folder.name}/{entry.name}", label))
    if not entries:
        raise FormatError(root, None, "no class folders with images found")
    entries.sort()
    return LsdSamples(
        root=root,
        paths=[p for p, _ in entries],
        labels=np.array([label for _, label in entries], dtype=np.int64),
    )


def read_lsd_test_list(path: str | Path) -> list[str]:
    """``LSD_Challenge_test_set_release.txt``: header ``image,expression``, one name a line."""
    return _read_name_list(path, vocab.LSD_TEST_LIST_HEADER, "LSD test list")


def read_occlusion_csv(path: str | Path) -> dict[str, int]:
    """``{relative image path: 0/1}`` from a CSV with at least the columns ``image,hand``.

    ``hand`` accepts 0/1 (also ``0.0``/``1.0``, ``true``/``false``). Paths are normalised to
    forward slashes. An image listed twice with different flags is an error naming both lines.
    """
    path = Path(path)
    flags: dict[str, int] = {}
    first_line: dict[str, int] = {}
    text = read_text(path)  # missing, empty, a device or not UTF-8: a FormatError
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "image" not in columns or "hand" not in columns:
            raise FormatError(path, 1, f"expected columns 'image' and 'hand', found {columns}")
        reader.fieldnames = columns
        for row in reader:
            line = reader.line_num
            image = (row.get("image") or "").strip().replace("\\", "/")
            raw = (row.get("hand") or "").strip().lower()
            if not image:
                raise FormatError(path, line, "empty image name")
            if raw in ("1", "1.0", "true"):
                hand = 1
            elif raw in ("0", "0.0", "false"):
                hand = 0
            else:
                raise FormatError(path, line, f"hand must be 0 or 1, got {raw!r}")
            if image in flags and flags[image] != hand:
                raise FormatError(
                    path, line, f"{image} is flagged {hand} here but {flags[image]} on line "
                    f"{first_line[image]}"
                )
            flags[image] = hand
            first_line.setdefault(image, line)
    return flags


# --- per-video tasks (Aff-Wild2) ------------------------------------------------------------


def frame_image(video: str, k: int) -> str:
    """Image path (relative to ``cropped_aligned``) of 1-based frame ``k`` of ``video``."""
    if k < 1:
        raise ValueError(f"frame numbers start at 1, got {k}")
    return f"{video}/{vocab.FRAME_NAME_FORMAT.format(k)}"


def read_per_video_annotation(path: str | Path, task: str) -> np.ndarray:
    """One ``<video>.txt`` of a per-video task; data line k is frame k.

    VA: float32 ``(F, 2)``, ``-5`` where absent; EXPR: int64 ``(F,)``, ``-1`` where absent
    (8-class header, or the 1st/2nd editions' 7-class header with classes 0..6); AU: int64
    ``(F, 12)``, ``-1`` where absent.
    """
    if task not in vocab.PER_VIDEO_HEADERS:
        raise ConfigError(f"unknown per-video task {task!r}; expected one of va, expr, au")
    path = Path(path)
    lines = split_lines(path, read_text(path))
    headers = [vocab.PER_VIDEO_HEADERS[task]]
    if task == "expr":
        headers.append(vocab.PER_VIDEO_HEADERS_EXPR_7)
    _check_header(path, lines, headers, f"{task.upper()} annotation")
    columns = {
        "va": ("valence", "arousal"),
        "expr": ("expression",),
        "au": vocab.AUS,
    }[task]
    body = lines[1:]
    _check_field_counts(path, body, 2, len(columns))
    _, values = _parse_table(path, body, 2, columns, text_first=False)
    line_numbers = np.arange(2, len(body) + 2, dtype=np.int64)
    if task == "va":
        bad = ~(((values >= -1.0) & (values <= 1.0)) | (values == vocab.VA_MISSING))
        _first_violation(path, line_numbers, [
            (bad[:, 0], lambda r: f"valence {_num(values[r, 0])} is not in [-1, 1] or -5"),
            (bad[:, 1], lambda r: f"arousal {_num(values[r, 1])} is not in [-1, 1] or -5"),
        ])
        return values.astype(np.float32)
    if task == "expr":
        seven = lines[0] == vocab.PER_VIDEO_HEADERS_EXPR_7
        classes = len(vocab.EXPRESSIONS_7) if seven else vocab.NUM_EXPRESSIONS
        e = values[:, 0]
        _first_violation(path, line_numbers, [
            (_bad_int(e, vocab.EXPR_MISSING, classes - 1),
             lambda r: f"expression {_num(e[r])} is not an integer in -1..{classes - 1}"),
        ])
        return e.astype(np.int64)
    bad = _bad_int(values, vocab.AU_MISSING, 1)
    _first_violation(path, line_numbers, [
        (bad.any(axis=1),
         lambda r: (f"{vocab.AUS[int(np.flatnonzero(bad[r])[0])]} "
                    f"{_num(values[r][bad[r]][0])} is not -1, 0 or 1")),
    ])
    return values.astype(np.int64)


def find_task_folder(root: str | Path, task: str) -> Path:
    """The annotation folder of ``task`` under ``root``, whichever edition named it.

    Tries every name in :data:`vocab.PER_VIDEO_FOLDERS` (current name first); ``root`` may
    also be the task folder itself.
    """
    if task not in vocab.PER_VIDEO_FOLDERS:
        raise ConfigError(f"unknown per-video task {task!r}; expected one of va, expr, au")
    root = Path(root)
    names = vocab.PER_VIDEO_FOLDERS[task]
    if root.name in names and root.is_dir():
        return root
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FormatError(root, None, f"no {task.upper()} annotation folder ({' or '.join(names)})")


def read_per_video_split(root: str | Path, task: str, split: str) -> dict[str, np.ndarray]:
    """Every ``<video>.txt`` of one split, sorted by video name: video -> per-frame values."""
    if split not in vocab.PER_VIDEO_SPLITS:
        raise ConfigError(
            f"unknown split {split!r}; expected one of {', '.join(vocab.PER_VIDEO_SPLITS)}"
        )
    folder = find_task_folder(root, task) / split
    if not folder.is_dir():
        raise FormatError(folder, None, "split folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
    if not files:
        raise FormatError(folder, None, "no <video>.txt annotation files")
    return {p.stem: read_per_video_annotation(p, task) for p in files}


def read_test_video_names(path: str | Path) -> list[str]:
    """A ``*_test_set_release.txt`` list of test video names: no header, one name a line."""
    path = Path(path)
    lines = split_lines(path, read_text(path))
    if not lines:
        raise FormatError(path, None, "file is empty")
    names = [line.strip() for line in lines]
    for row, name in enumerate(names):
        if not name or "," in name or "/" in name:
            raise FormatError(path, row + 1, f"expected one video name, got {_shorten(name)}")
    return names


def read_sample_file(path: str | Path, task: str) -> list[str]:
    """A 5th-edition-on sample file: the image locations, in file order.

    Header must be the task's submission header; rows are ``<loc>,`` or ``<loc>,<dummy
    values>`` (only the location is kept).
    """
    if task not in vocab.PER_VIDEO_SUBMISSION_HEADERS:
        raise ConfigError(f"unknown task {task!r}; expected one of va, expr, au, ce")
    path = Path(path)
    lines = split_lines(path, read_text(path))
    header = vocab.PER_VIDEO_SUBMISSION_HEADERS[task]
    _check_header(path, lines, (header, header + ","), f"{task.upper()} sample file")
    locations = [line.partition(",")[0].strip(" \t") for line in lines[1:]]
    for row, loc in enumerate(locations):
        if not loc:
            raise FormatError(path, row + 2, f"no image location in {_shorten(lines[row + 1])}")
    return locations


def _edition_candidates(root: Path, task: str, position: int, folders: tuple[str, ...],
                        variants: Sequence[str] = ("",)) -> list[Path]:
    names = []
    for edition in sorted(vocab.PER_VIDEO_EDITION_FILES, reverse=True):
        name = vocab.PER_VIDEO_EDITION_FILES[edition][task][position]
        for variant in variants:
            names.append(name.replace("_example.txt", variant) if variant else name)
    return [root / folder / name for folder in folders for name in dict.fromkeys(names)]


def find_sample_file(root: str | Path, task: str) -> Path:
    """The test sample file of ``task`` (5th edition on) under ``root``, whichever edition
    named it: ``test_set_examples/CVPR_<n>th_ABAW_<T>_test_set_example.txt`` (or the same
    name ending ``_sample.txt``), in ``test_set_examples/`` or ``root`` itself."""
    if task not in vocab.PER_VIDEO_TASKS:
        raise ConfigError(f"unknown per-video task {task!r}; expected one of va, expr, au")
    root = Path(root)
    candidates = _edition_candidates(root, task, 2, (vocab.PER_VIDEO_SAMPLES_DIR, ""),
                                     ("", "_sample.txt"))
    for path in candidates:
        if path.is_file():
            return path
    raise FormatError(root, None, f"no {task.upper()} test sample file (looked for "
                                  f"{' or '.join(sorted({p.name for p in candidates}))})")


def find_test_video_names(root: str | Path, task: str) -> Path:
    """The ``names_of_videos_in_each_test_set/<...>_test_set_release.txt`` of ``task``
    under ``root`` (5th or 6th edition name)."""
    if task not in vocab.PER_VIDEO_TASKS:
        raise ConfigError(f"unknown per-video task {task!r}; expected one of va, expr, au")
    root = Path(root)
    candidates = _edition_candidates(root, task, 1, (vocab.PER_VIDEO_TEST_NAMES_DIR, ""))
    for path in candidates:
        if path.is_file():
            return path
    raise FormatError(root, None, f"no {task.upper()} list of test videos (looked for "
                                  f"{' or '.join(sorted({p.name for p in candidates}))})")


def read_expected_names(path: str | Path, kind: str) -> list[str]:
    """The names a ``kind`` submission must follow, from the official file at ``path``.

    ``kind`` ``"mtl"`` / ``"lsd"``: the challenge's test list; a per-video task
    (va/expr/au/ce): its sample file. Order and repeats as in the file.
    """
    if kind == "mtl":
        return read_mtl_test_list(path)
    if kind == "lsd":
        return read_lsd_test_list(path)
    return read_sample_file(path, kind)


def expected_names(source: Sequence[str] | str | Path, kind: str) -> list[str]:
    """The names a ``kind`` submission must follow: given as a list, or as the path of the
    official test list / sample file (:func:`abaw.formats.readers.read_expected_names`)."""
    if isinstance(source, (str, Path)):
        return read_expected_names(source, kind)
    return [str(v) for v in source]
