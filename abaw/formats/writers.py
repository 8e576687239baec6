"""Writers of every official ABAW file: submissions and the data-side files the generator needs.

Conventions every writer keeps (see ``shared/ABAW_FORMATS.md``):

- the file is written atomically through :mod:`abaw.fileio`: a failed write leaves no file,
  and an existing file at the destination stays untouched;
- every value is checked *before* anything is written; a bad value raises
  :class:`~abaw.errors.AbawError` naming the 0-based row index and the image / location;
- ``\\n`` line endings, a final newline, exactly one line per entry, in the order given;
- floats in fixed notation with at most 6 decimals, trailing zeros stripped but at least one
  decimal kept (``0.5``, ``-1.0``, ``0.7118``), never exponent notation (:func:`format_float`);
- classes and AUs as plain integers.

Sentinels in the data-side annotation files: in the 16-field MTL annotation file they go
through :func:`format_float` like any value, so an absent valence/arousal is written
``-5.0`` (a reader parses by value, so ``-5`` and ``-5.0`` read the same); in a per-video VA
file a frame without labels is written ``-5,-5``, the spelling of the official per-video
files. Expression and AU sentinels are the integer ``-1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from abaw import vocab
from abaw.errors import AbawError
from abaw.fileio import atomic_write_text

#: Submission tasks of the 5th-edition-on per-video format -> number of classes (None = VA).
PER_VIDEO_CLASSES: dict[str, int | None] = {
    "va": None,
    "expr": vocab.NUM_EXPRESSIONS,
    "au": None,
    "ce": vocab.NUM_COMPOUND,
}
_DECIMALS = 6


# --- number formatting ------------------------------------------------------------------------


def _format_finite(value: float) -> str:
    text = f"{value:.{_DECIMALS}f}".rstrip("0")
    if text.endswith("."):
        text += "0"
    # -0.0000001 rounds to "-0.0": a signed zero is noise, write it as 0.0
    return "0.0" if text == "-0.0" else text


def format_float(x: float) -> str:
    """One float in the ABAW text convention: ``0.5``, ``-1.0``, ``0.7118`` (max 6 decimals).

    Rounding is Python's correctly rounded decimal conversion (``%.6f``). Raises
    :class:`ValueError` for NaN or infinity, which have no place in an ABAW file.
    """
    value = float(x)
    if not np.isfinite(value):
        raise ValueError(f"cannot write a non-finite number ({value!r})")
    return _format_finite(value)


def format_floats(values: np.ndarray | Sequence[float]) -> list[str]:
    """:func:`format_float` over a 1-D array (well under a second per million values).

    ``%``-formatting a Python float list in comprehensions (no per-value function call) is
    faster here than numpy's string ufuncs, and keeps Python's correct decimal rounding.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size and not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"cannot write a non-finite number ({array[bad]!r}) at index {bad}")
    fmt = f"%.{_DECIMALS}f"
    texts = [(fmt % v).rstrip("0") for v in array.tolist()]
    texts = [t + "0" if t[-1] == "." else t for t in texts]
    # tiny negatives round to "-0.0": a signed zero is noise, write 0.0 as format_float does
    for row in np.flatnonzero((array <= 0.0) & (array > -1e-5)).tolist():
        if texts[row] == "-0.0":
            texts[row] = "0.0"
    return texts


def format_ints(values: np.ndarray | Sequence[int]) -> list[str]:
    """Integers as decimal text (the array must already hold integral values).

    Small-range labels (classes, AUs) go through a lookup table, ~10x faster than ``str``.
    """
    array = np.asarray(values).astype(np.int64).ravel()
    if array.size == 0:
        return []
    low, high = int(array.min()), int(array.max())
    if high - low > 4096:
        return [str(v) for v in array.tolist()]
    table = np.array([str(v) for v in range(low, high + 1)], dtype=object)
    return table[array - low].tolist()


def format_int_rows(values: np.ndarray) -> list[str]:
    """Each row of a small-range integer matrix (e.g. the 12 AUs) as one comma-joined string.

    Rows are encoded as integers, and only distinct rows are formatted: a million AU rows
    hold a few thousand distinct patterns at most.
    """
    array = np.asarray(values).astype(np.int64)
    if array.ndim != 2 or array.shape[0] == 0:
        return [""] * (array.shape[0] if array.ndim else 0)
    low = int(array.min())
    base = int(array.max()) - low + 1
    if base ** array.shape[1] >= 2**62:
        return [",".join(map(str, row)) for row in array.tolist()]
    codes = (array - low) @ (base ** np.arange(array.shape[1], dtype=np.int64))
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    table = np.array([",".join(map(str, array[i].tolist())) for i in first], dtype=object)
    return table[inverse.ravel()].tolist()


# --- validation helpers (all raise AbawError naming row index and entry) ----------------------


def _row_error(names: Sequence[str], row: int, message: str) -> AbawError:
    name = names[row] if 0 <= row < len(names) else "?"
    return AbawError(f"row {row} ({name}): {message}")


def _names(values: Iterable[str], what: str) -> list[str]:
    """Image names / locations as a list of str, checked to be writable as one CSV field."""
    names = [str(v) for v in values]
    # one scan of the joined text instead of four tests per name; locate only on failure
    joined = "\0".join(names)
    if not names or not ("," in joined or "\n" in joined or "\r" in joined
                         or "\0\0" in joined or not names[0] or not names[-1]):
        return names
    for row, name in enumerate(names):
        if not name or "," in name or "\n" in name or "\r" in name:
            raise AbawError(f"row {row}: {what} {name!r} is empty or contains a comma or newline")
    return names


def _check_length(names: Sequence[str], array: np.ndarray, what: str) -> None:
    if array.shape[0] != len(names):
        raise AbawError(f"{what} has {array.shape[0]} rows but there are {len(names)} images")


def _float_column(
    names: Sequence[str], values: object, what: str, *, sentinel: float | None = None,
    clip: bool = False,
) -> np.ndarray:
    """A 1-D float column: finite, in [-1, 1] (or equal to ``sentinel``) unless ``clip``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise AbawError(f"{what} is not numeric: {err}") from None
    if array.ndim != 1:
        raise AbawError(f"{what} must be 1-D, got shape {array.shape}")
    _check_length(names, array, what)
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise _row_error(names, row, f"{what} is {float(array[row])}")
    if clip:
        return np.clip(array, -1.0, 1.0)
    bad = np.abs(array) > 1.0
    if sentinel is not None:
        bad &= array != sentinel
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        allowed = "[-1, 1]" + (f" or {sentinel:g}" if sentinel is not None else "")
        raise _row_error(names, row, f"{what} {float(array[row])} is outside {allowed}")
    return array


def _int_array(
    names: Sequence[str], values: object, what: str, allowed: Sequence[int], shape_tail: tuple,
) -> np.ndarray:
    """An integer array of shape ``(N, *shape_tail)`` whose every value is in ``allowed``.

    Float input is accepted only where it holds integral values (0.0, 1.0), so a probability
    passed by mistake is refused instead of truncated.
    """
    try:
        array = np.asarray(values)
        if array.dtype == object or array.dtype.kind not in "biuf":
            array = array.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise AbawError(f"{what} is not numeric: {err}") from None
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        expected = "(N" + "".join(f", {n}" for n in shape_tail) + ")"
        raise AbawError(f"{what} must have shape {expected}, got {array.shape}")
    _check_length(names, array, what)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        integral = finite & (array == np.round(array))
        if not integral.all():
            row = int(np.argwhere(~integral)[0][0])
            value = float(array[~integral][0])
            raise _row_error(names, row, f"{what} holds the non-integer {value}")
    array = array.astype(np.int64)
    low, high = min(allowed), max(allowed)  # every allowed set here is a contiguous range
    ok = (array >= low) & (array <= high)
    if not ok.all():
        row = int(np.argwhere(~ok)[0][0])
        span = "0 or 1" if list(allowed) == [0, 1] else f"in {low}..{high}"
        raise _row_error(names, row, f"{what} {int(array[~ok][0])} is not {span}")
    return array


def _expected_names(source: Sequence[str] | str | Path, kind: str) -> list[str]:
    # imported here: pandas (the readers) is only needed when a file is given
    from abaw.formats.readers import expected_names

    return expected_names(source, kind)


def _check_against_list(names: Sequence[str], expected: Sequence[str], what: str) -> None:
    """``names`` must equal ``expected`` exactly: same entries, same order, repeats kept."""
    if list(names) == expected:
        return
    for row, (got, want) in enumerate(zip(names, expected)):
        if got != want:
            raise AbawError(
                f"row {row}: image {got!r} differs from {what} entry {want!r} "
                "(a submission must follow the list exactly: same order, repeats kept)"
            )
    raise AbawError(
        f"{len(names)} rows but the {what} has {len(expected)} entries "
        "(a submission must follow the list exactly: same order, repeats kept)"
    )


def _lines(header: str, columns: Sequence[Sequence[str]]) -> str:
    """Header plus one comma-joined line per row, ``\\n`` endings, final newline."""
    body = "\n".join(map(",".join, zip(*columns))) if columns and len(columns[0]) else ""
    return header + "\n" + (body + "\n" if body else "")


def _au_columns(aus: np.ndarray) -> list[list[str]]:
    """The 12 AU fields of every row, pre-joined into one column."""
    return [format_int_rows(aus)]


# --- MTL (4th ABAW) -----------------------------------------------------------------------------


def _write_mtl_rows(path: str | Path, header: str, names: Sequence[str], valence: np.ndarray,
                    arousal: np.ndarray, expression: np.ndarray, aus: np.ndarray) -> Path:
    """Write checked MTL columns (the 16-field layout of submissions and annotation files)."""
    columns = [names, format_floats(valence), format_floats(arousal), format_ints(expression),
               *_au_columns(aus)]
    return atomic_write_text(path, _lines(header, columns))


def write_mtl_submission(
    path: str | Path,
    images: Sequence[str],
    valence: object,
    arousal: object,
    expression: object,
    aus: object,
    *,
    test_list: Sequence[str] | str | Path | None = None,
) -> Path:
    """Write an MTL challenge submission: ``image,valence,arousal,expression,aus`` + 16 fields.

    Valence and arousal are clipped to [-1, 1] (NaN/inf refused); ``expression`` must be ints
    0..7 and ``aus`` an ``(N, 12)`` array of 0/1. When ``test_list`` (the names, or the path of
    the official list) is given, ``images`` must equal it exactly (order and repeats).
    """
    names = _names(images, "image")
    if test_list is not None:
        _check_against_list(names, _expected_names(test_list, "mtl"), "test list")
    v = _float_column(names, valence, "valence", clip=True)
    a = _float_column(names, arousal, "arousal", clip=True)
    e = _int_array(names, expression, "expression", range(vocab.NUM_EXPRESSIONS), ())
    au = _int_array(names, aus, "aus", (0, 1), (vocab.NUM_AUS,))
    return _write_mtl_rows(path, vocab.MTL_SUBMISSION_HEADER, names, v, a, e, au)


def write_mtl_annotations(
    path: str | Path,
    images: Sequence[str],
    valence: object,
    arousal: object,
    expression: object,
    aus: object,
) -> Path:
    """Write a 16-field MTL annotation file (header :data:`vocab.MTL_ANNOTATION_HEADER`).

    Sentinels pass through: V/A ``-5`` (written ``-5.0``), expression and AU ``-1``.
    """
    names = _names(images, "image")
    v = _float_column(names, valence, "valence", sentinel=vocab.VA_MISSING)
    a = _float_column(names, arousal, "arousal", sentinel=vocab.VA_MISSING)
    e = _int_array(
        names, expression, "expression", range(vocab.EXPR_MISSING, vocab.NUM_EXPRESSIONS), ()
    )
    au = _int_array(names, aus, "aus", (vocab.AU_MISSING, 0, 1), (vocab.NUM_AUS,))
    return _write_mtl_rows(path, vocab.MTL_ANNOTATION_HEADER, names, v, a, e, au)


def write_mtl_test_list(
    path: str | Path, images: Sequence[str], trailing_comma: bool = False
) -> Path:
    """Write an MTL test list: the submission header, then one relative path a line.

    ``trailing_comma=True`` writes ``<image>,`` rows, as a later edition shipped the list.
    """
    names = _names(images, "image")
    suffix = "," if trailing_comma else ""
    return atomic_write_text(
        path, _lines(vocab.MTL_TEST_LIST_HEADER, [[n + suffix for n in names]])
    )


# --- LSD (4th ABAW) -------------------------------------------------------------------------


def write_lsd_submission(
    path: str | Path,
    images: Sequence[str],
    expression: object,
    *,
    test_list: Sequence[str] | str | Path | None = None,
) -> Path:
    """Write an LSD submission: ``image,expression`` then ``<name>,<int 0..5>`` per entry.

    ``test_list``: the names, or the path of the official list, the rows must follow exactly.
    """
    names = _names(images, "image")
    if test_list is not None:
        _check_against_list(names, _expected_names(test_list, "lsd"), "test list")
    labels = _int_array(names, expression, "expression", range(vocab.NUM_LSD_CLASSES), ())
    return atomic_write_text(
        path, _lines(vocab.LSD_SUBMISSION_HEADER, [names, format_ints(labels)])
    )


def write_lsd_labels(path: str | Path, images: Sequence[str], labels: object) -> Path:
    """Write an LSD ground-truth file in the submission layout (``image,expression``)."""
    return write_lsd_submission(path, images, labels)


def write_lsd_test_list(path: str | Path, names: Sequence[str]) -> Path:
    """Write an LSD test list: header ``image,expression``, then one bare name a line."""
    return atomic_write_text(
        path, _lines(vocab.LSD_TEST_LIST_HEADER, [_names(names, "image")])
    )


# --- per-video tasks (Aff-Wild2, ABAW 3 and 5 on) -------------------------------------------


def _check_task(task: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if task not in allowed:
        raise AbawError(f"unknown task {task!r}; expected one of {', '.join(allowed)}")


def _per_video_value_columns(
    task: str, names: Sequence[str], values: object, *, annotation: bool
) -> list[list[str]]:
    """Value columns of one per-video task, checked; ``annotation`` allows the sentinels."""
    if task == "va":
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 2:
            raise AbawError(f"va values must have shape (N, 2), got {array.shape}")
        if annotation:
            v = _float_column(names, array[:, 0], "valence", sentinel=vocab.VA_MISSING)
            a = _float_column(names, array[:, 1], "arousal", sentinel=vocab.VA_MISSING)
            missing = (v == vocab.VA_MISSING) | (a == vocab.VA_MISSING)
            if (missing & (v != a)).any():
                row = int(np.flatnonzero(missing & (v != a))[0])
                raise _row_error(names, row, "valence and arousal must be -5 together")
            sentinel = f"{vocab.VA_MISSING:g}"
            cols = [format_floats(v), format_floats(a)]
            for col in cols:
                for row in np.flatnonzero(missing).tolist():
                    col[row] = sentinel
            return cols
        v = _float_column(names, array[:, 0], "valence", clip=True)
        a = _float_column(names, array[:, 1], "arousal", clip=True)
        return [format_floats(v), format_floats(a)]
    if task == "au":
        allowed = (vocab.AU_MISSING, 0, 1) if annotation else (0, 1)
        return _au_columns(_int_array(names, values, "aus", allowed, (vocab.NUM_AUS,)))
    classes = PER_VIDEO_CLASSES[task] or 0
    low = vocab.EXPR_MISSING if annotation else 0
    return [format_ints(_int_array(names, values, task, range(low, classes), ()))]


def write_per_video_submission(
    path: str | Path,
    task: str,
    locations: Sequence[str],
    values: object,
    *,
    sample: Sequence[str] | str | Path | None = None,
) -> Path:
    """Write a 5th-edition-on per-video submission for ``task`` in va/expr/au/ce.

    Rows: VA ``<loc>,<v>,<a>`` (clipped to [-1, 1]); EXPR ``<loc>,<int 0..7>``; AU
    ``<loc>,<12 values 0/1>``; CE ``<loc>,<int 0..6>``. When ``sample`` (the sample file's
    locations, or its path) is given, ``locations`` must equal it exactly.
    """
    _check_task(task, vocab.PER_VIDEO_SUBMISSION_HEADERS)
    names = _names(locations, "location")
    if sample is not None:
        _check_against_list(names, _expected_names(sample, task), "sample file")
    columns = [names, *_per_video_value_columns(task, names, values, annotation=False)]
    return atomic_write_text(path, _lines(vocab.PER_VIDEO_SUBMISSION_HEADERS[task], columns))


def write_per_video_3rd_edition(
    out_dir: str | Path, task: str, videos: Mapping[str, np.ndarray]
) -> list[Path]:
    """Write a 3rd-edition submission: one ``<video>.txt`` per video, one line per frame.

    Every video is checked before the first file is written.
    """
    _check_task(task, vocab.PER_VIDEO_TASKS)
    texts: dict[str, str] = {}
    for video, values in videos.items():
        _names([video], "video name")
        if "/" in video or "\\" in video:
            raise AbawError(f"video name {video!r} must not contain a path separator")
        count = np.asarray(values).shape[0] if np.ndim(values) else 0
        frames = [vocab.FRAME_NAME_FORMAT.format(k) for k in range(1, count + 1)]
        try:
            columns = _per_video_value_columns(task, frames, values, annotation=False)
        except AbawError as err:
            raise AbawError(f"video {video}: {err}") from None
        texts[video] = _lines(vocab.PER_VIDEO_HEADERS[task], columns)
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / f"{video}.txt", text) for video, text in texts.items()]


def write_per_video_annotation(
    path: str | Path, task: str, values: object, *, seven_classes: bool = False
) -> Path:
    """Write one video's annotation file: the per-video header, then one line per frame.

    VA: ``v,a`` pairs, ``-5,-5`` for an unlabelled frame; EXPR: one int (-1 absent; with
    ``seven_classes`` the 1st/2nd-edition header and classes 0..6); AU: 12 ints (-1 absent).
    """
    _check_task(task, vocab.PER_VIDEO_TASKS)
    count = np.asarray(values).shape[0] if np.ndim(values) else 0
    frames = [vocab.FRAME_NAME_FORMAT.format(k) for k in range(1, count + 1)]
    if task == "expr":
        classes = len(vocab.EXPRESSIONS_7) if seven_classes else vocab.NUM_EXPRESSIONS
        header = vocab.PER_VIDEO_HEADERS_EXPR_7 if seven_classes else vocab.PER_VIDEO_HEADERS[task]
        labels = _int_array(frames, values, "expression", range(vocab.EXPR_MISSING, classes), ())
        return atomic_write_text(path, _lines(header, [format_ints(labels)]))
    columns = _per_video_value_columns(task, frames, values, annotation=True)
    return atomic_write_text(path, _lines(vocab.PER_VIDEO_HEADERS[task], columns))


def write_test_video_names(path: str | Path, names: Sequence[str]) -> Path:
    """Write a ``*_test_set_release.txt`` video-name list: no header, one name a line."""
    checked = _names(names, "video name")
    return atomic_write_text(path, "".join(n + "\n" for n in checked))


def write_sample_file(path: str | Path, task: str, locations: Sequence[str]) -> Path:
    """Write a 5th-edition-on sample file: the task's submission header, rows ``<loc>,``."""
    _check_task(task, vocab.PER_VIDEO_SUBMISSION_HEADERS)
    names = _names(locations, "location")
    return atomic_write_text(
        path, _lines(vocab.PER_VIDEO_SUBMISSION_HEADERS[task], [[n + "," for n in names]])
    )
