"""The submission validator: every problem the server could reject a file for, by line.

:func:`validate_submission` checks a submission of one kind (``mtl``, ``lsd``, ``va``,
``expr``, ``au``, ``ce``) against its official layout (``shared/ABAW_FORMATS.md``) and, when
given, against the test list (MTL, LSD) or the sample file (per-video tasks). It returns a
list of :class:`Problem` — empty means the file would be accepted — and never raises, whatever
the bytes: a validator that crashes on a broken file is useless exactly when it is needed.

What counts as a problem: a missing, empty or non-UTF-8 file; a wrong header; a blank line; a
wrong field count; a value that is not a number, is NaN/inf, is out of range, or is a float
where an integer belongs (``1.0`` for a class); an image that is unknown, missing, out of
order, a dropped repeat or an extra row. CRLF line endings and a missing final newline are
reported too, as *tolerable* problems: the server's tolerance of them is unknown, so the
validator rejects them, while the strict readers used for scoring accept them.

Line numbers are 1-based file lines (line 1 is the header). A missing image is reported at
the line where it should have been.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from abaw import vocab
from abaw.errors import AbawError, ConfigError, FormatError
from abaw.fileio import is_device
from abaw.formats.readers import expected_names

KINDS: tuple[str, ...] = ("mtl", "lsd", "va", "expr", "au", "ce")


@dataclass(frozen=True)
class Problem:
    """One reason a submission would be rejected. ``line`` is None for the whole file."""

    line: int | None
    message: str
    #: a style problem (CRLF, no final newline) that a lenient reader may accept
    tolerable: bool = False


@dataclass(frozen=True)
class _Column:
    name: str
    low: float
    high: float
    integer: bool


@dataclass(frozen=True)
class _Spec:
    header: str
    columns: tuple[_Column, ...]
    list_name: str  # what the expected names come from
    row_hint: str  # what a data row holds, for field-count messages

    @property
    def fields(self) -> int:
        return 1 + len(self.columns)


def _va() -> tuple[_Column, ...]:
    return (_Column("valence", -1.0, 1.0, False), _Column("arousal", -1.0, 1.0, False))


def _aus() -> tuple[_Column, ...]:
    return tuple(_Column(au, 0, 1, True) for au in vocab.AUS)


def _classes(name: str, count: int) -> tuple[_Column, ...]:
    return (_Column(name, 0, count - 1, True),)


SPECS: dict[str, _Spec] = {
    "mtl": _Spec(
        vocab.MTL_SUBMISSION_HEADER,
        (*_va(), *_classes("expression", vocab.NUM_EXPRESSIONS), *_aus()),
        "test list",
        "image, valence, arousal, expression and the 12 AUs",
    ),
    "lsd": _Spec(
        vocab.LSD_SUBMISSION_HEADER,
        _classes("expression", vocab.NUM_LSD_CLASSES),
        "test list",
        "image and one class index",
    ),
    "va": _Spec(
        vocab.PER_VIDEO_SUBMISSION_HEADERS["va"], _va(), "sample file",
        "image location, valence and arousal",
    ),
    "expr": _Spec(
        vocab.PER_VIDEO_SUBMISSION_HEADERS["expr"],
        _classes("expression", vocab.NUM_EXPRESSIONS),
        "sample file",
        "image location and one class index, not a score per class",
    ),
    "au": _Spec(
        vocab.PER_VIDEO_SUBMISSION_HEADERS["au"], _aus(), "sample file",
        "image location and the 12 AU values",
    ),
    "ce": _Spec(
        vocab.PER_VIDEO_SUBMISSION_HEADERS["ce"],
        _classes("compound expression", vocab.NUM_COMPOUND),
        "sample file",
        "image location and one class index, not a score per class",
    ),
}

# ASCII digits only: ``\d`` also matches fullwidth and Arabic-Indic digits, which no number
# parser downstream reads
_FLOAT = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_INT = r"-?[0-9]+"
_NAME = r"[^,\s\x00-\x1f][^,\x00-\x1f]*"
#: what a value must look like, for the messages
_INT_HINT = ("an integer: write ASCII digits with an optional leading '-' (classes and AUs "
             "are written 1, not +1, 1.0 or a probability)")
_FLOAT_HINT = "a number: write ASCII digits with an optional sign, '.' and exponent (e.g. -0.25)"
_FLOAT_RE = re.compile(_FLOAT)
_INT_RE = re.compile(_INT)
_NAME_RE = re.compile(_NAME)
_SPECIAL = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _row_pattern(spec: _Spec) -> re.Pattern[str]:
    # each field pattern stops at a comma, so matching is linear in the line length
    parts = [_NAME] + [_INT if c.integer else _FLOAT for c in spec.columns]
    return re.compile(",".join(parts))


_ROW_RES = {kind: _row_pattern(spec) for kind, spec in SPECS.items()}


def _fields(count: int) -> str:
    return f"{count} field" + ("" if count == 1 else "s")


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass
class ParsedSubmission:
    """What :func:`parse_submission` found: problems, and the values of the good rows.

    ``names``/``values``/``line_numbers`` cover the rows that parsed (all rows when there are
    no non-tolerable problems); ``values`` is float64 ``(N, columns)``. ``all_names`` holds
    the first field of every data line (for matching against the expected list).
    """

    problems: list[Problem] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    values: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    line_numbers: list[int] = field(default_factory=list)
    all_names: list[tuple[int, str]] = field(default_factory=list)
    rows: int = 0


def _diagnose(spec: _Spec, line: str) -> str:
    """Why a data line does not match the row pattern (first reason only)."""
    commas = line.count(",")
    if commas != spec.fields - 1:
        return f"{_fields(commas + 1)}; expected {spec.fields}: {spec.row_hint}"
    fields = line.split(",")
    if _NAME_RE.fullmatch(fields[0]) is None:
        return f"image name {_show(fields[0])} is empty or has spaces or control characters"
    for column, text in zip(spec.columns, fields[1:]):
        if text == "":
            return f"{column.name} is empty"
        if text.strip().lower() in _SPECIAL:
            return f"{column.name} is {_show(text)}: NaN and infinity are not allowed"
        if column.integer:
            if _INT_RE.fullmatch(text):
                continue
            return f"{column.name} {_show(text)} is not {_INT_HINT}"
        if _FLOAT_RE.fullmatch(text) is None:
            return f"{column.name} {_show(text)} is not {_FLOAT_HINT}"
    return "malformed line"  # unreachable when the row pattern and the checks agree


def _decode(data: bytes, problems: list[Problem]) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        problems.append(Problem(line, f"not UTF-8 text (byte 0x{data[err.start]:02x}); "
                                      "is this a text file?"))
        text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        problems.append(Problem(1, "file starts with a UTF-8 byte-order mark; remove it"))
        text = text[1:]
    return text


def _check_values(spec: _Spec, parsed: ParsedSubmission, ok_lines: list[str]) -> None:
    """Parse the pattern-matching rows and check every value's range."""
    if not ok_lines:
        parsed.values = np.empty((0, len(spec.columns)))
        return
    # every line matched the row pattern, so the C parser cannot meet a surprise here
    frame = pd.read_csv(
        io.StringIO("\n".join(ok_lines)),
        header=None,
        names=list(range(spec.fields)),
        index_col=False,
        dtype={0: object, **{i: np.float64 for i in range(1, spec.fields)}},
        na_filter=False,
        quoting=csv.QUOTE_NONE,
        skip_blank_lines=False,
        engine="c",
    )
    parsed.names = frame[0].tolist()
    values = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
    if values.shape != (len(ok_lines), len(spec.columns)):
        raise AbawError(f"parsed {values.shape} values from {len(ok_lines)} lines")
    low = np.array([c.low for c in spec.columns])
    high = np.array([c.high for c in spec.columns])
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values < low) | (values > high)
    keep = np.ones(len(ok_lines), dtype=bool)
    for r, c in np.argwhere(bad).tolist():
        if not keep[r]:
            continue  # one problem per line
        keep[r] = False
        column = spec.columns[c]
        text = ok_lines[r].split(",")[c + 1]
        if not np.isfinite(values[r, c]):
            message = f"{column.name} {_show(text)} is not finite"
        elif column.integer:
            allowed = "0 or 1" if (column.low, column.high) == (0, 1) \
                else f"in {int(column.low)}..{int(column.high)}"
            message = f"{column.name} {_show(text)} is not {allowed}"
        else:
            message = f"{column.name} {_show(text)} is outside [{column.low:g}, {column.high:g}]"
        parsed.problems.append(Problem(parsed.line_numbers[r], message))
    if not keep.all():
        index = np.flatnonzero(keep)
        parsed.names = [parsed.names[i] for i in index.tolist()]
        parsed.line_numbers = [parsed.line_numbers[i] for i in index.tolist()]
        values = values[keep]
    parsed.values = values


def _parse_text(kind: str, data: bytes) -> ParsedSubmission:
    spec = SPECS[kind]
    parsed = ParsedSubmission()
    problems = parsed.problems
    if not data:
        problems.append(Problem(None, "file is empty"))
        parsed.values = np.empty((0, len(spec.columns)))
        return parsed
    if b"\x00" in data:
        problems.append(Problem(data.count(b"\n", 0, data.index(b"\x00")) + 1,
                                "file contains NUL bytes: not a text file"))
    text = _decode(data, problems)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    else:
        problems.append(Problem(len(lines), "missing final newline after the last line",
                                tolerable=True))
    crlf = [i for i, line in enumerate(lines) if line.endswith("\r")]
    if crlf:
        problems.append(Problem(
            crlf[0] + 1,
            f"{len(crlf)} line(s) end with CRLF (\\r\\n), first here; write \\n line endings "
            "(the server's tolerance of CRLF is unknown)",
            tolerable=True,
        ))
        for i in crlf:
            lines[i] = lines[i][:-1]
    if not lines:
        problems.append(Problem(None, "file has no header line"))
        parsed.values = np.empty((0, len(spec.columns)))
        return parsed
    row_re = _ROW_RES[kind]
    first_data = 1
    if lines[0] != spec.header:
        if row_re.fullmatch(lines[0]):
            problems.append(Problem(1, f"missing header line: expected {spec.header!r}, "
                                       "found a data row"))
            first_data = 0
        else:
            problems.append(Problem(1, f"header is {_show(lines[0], 80)}; "
                                       f"expected {spec.header!r}"))
    body = lines[first_data:]
    matches = [row_re.fullmatch(line) is not None for line in body]
    if "" not in body and all(matches):  # the common case, without a per-line Python loop
        ok_lines = body
        parsed.rows = len(body)
        parsed.line_numbers = list(range(first_data + 1, first_data + 1 + len(body)))
        parsed.all_names = list(zip(parsed.line_numbers, (b.partition(",")[0] for b in body)))
    else:
        ok_lines = []
        for index, (line, match) in enumerate(zip(body, matches), start=first_data):
            number = index + 1
            if line == "":
                problems.append(Problem(number, "blank line"))
                continue
            parsed.rows += 1
            parsed.all_names.append((number, line.partition(",")[0]))
            if match:
                ok_lines.append(line)
                parsed.line_numbers.append(number)
            else:
                problems.append(Problem(number, _diagnose(spec, line)))
    _check_values(spec, parsed, ok_lines)
    return parsed


def parse_submission(kind: str, path: str | Path) -> ParsedSubmission:
    """Parse a submission of ``kind`` strictly, collecting problems instead of raising.

    Used by :func:`validate_submission` and by the strict submission readers.
    """
    if kind not in SPECS:
        raise AbawError(f"unknown submission kind {kind!r}; expected one of {', '.join(KINDS)}")
    path = Path(path)
    if is_device(path):  # /dev/zero would be read forever
        return ParsedSubmission(problems=[Problem(None, "is a device, not a file")],
                                values=np.empty((0, len(SPECS[kind].columns))))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ParsedSubmission(problems=[Problem(None, "file not found")],
                                values=np.empty((0, len(SPECS[kind].columns))))
    except OSError as err:
        return ParsedSubmission(problems=[Problem(None, f"cannot read: {err.strerror or err}")],
                                values=np.empty((0, len(SPECS[kind].columns))))
    return _parse_text(kind, data)


def _check_names(spec: _Spec, entries: list[tuple[int, str]], expected: list[str]) -> list[Problem]:
    """Match the submission's rows against the expected list (order and repeats)."""
    names = [name for _, name in entries]
    if names == expected:  # the common case: one C-level comparison
        return []
    problems: list[Problem] = []
    what = spec.list_name
    # integer codes for every distinct name, then per-code counts and per-row occurrence ranks
    codes, _ = pd.factorize(pd.Series(expected + names, dtype=object))
    want_codes, got_codes = codes[: len(expected)], codes[len(expected):]
    size = int(codes.max()) + 1 if codes.size else 0
    want = np.bincount(want_codes, minlength=size)
    got = np.bincount(got_codes, minlength=size)
    got_rank = pd.Series(got_codes).groupby(got_codes).cumcount().to_numpy()
    want_rank = pd.Series(want_codes).groupby(want_codes).cumcount().to_numpy()
    unknown = want[got_codes] == 0
    extra = ~unknown & (got_rank == want[got_codes])  # first row beyond the list's count
    for row in np.flatnonzero(unknown | extra).tolist():
        number, name = entries[row]
        if unknown[row]:
            problems.append(Problem(number, f"unknown image {_show(name)}: not in the {what}"))
        else:
            code = got_codes[row]
            problems.append(Problem(
                number, f"extra row: {_show(name)} appears {got[code]} times, "
                        f"the {what} has it {want[code]} time(s)",
            ))
    lacking = want_rank == got[want_codes]  # first list entry that has no row
    for position in np.flatnonzero(lacking).tolist():
        name = expected[position]
        code = want_codes[position]
        if got[code] == 0:
            message = f"missing image {_show(name)} ({what} entry {position + 1})"
        else:
            message = (f"dropped repeat: {_show(name)} appears {got[code]} time(s), the {what} "
                       f"has it {want[code]} times (entry {position + 1} has no row)")
        problems.append(Problem(position + 2, message))
    if not problems:  # same entries, same counts: the order is what differs
        wrong = [i for i, (a, b) in enumerate(zip(names, expected)) if a != b]
        first = wrong[0]
        problems.append(Problem(
            entries[first][0],
            f"out of order: found {_show(names[first])} where the {what} has "
            f"{_show(expected[first])} ({len(wrong)} row(s) out of place; rows must "
            f"follow the {what} order)",
        ))
    return problems


def validate_submission(
    kind: str,
    path: str | Path,
    *,
    test_list: Sequence[str] | str | Path | None = None,
    sample: Sequence[str] | str | Path | None = None,
) -> list[Problem]:
    """Every problem of submission ``path`` of ``kind`` (empty list: it would be accepted).

    ``test_list`` (MTL, LSD) or ``sample`` (va/expr/au/ce) is a file path or the list of
    names the rows must follow exactly. Never raises for any file content.
    """
    if kind not in SPECS:
        return [Problem(None, f"unknown submission kind {kind!r}; expected {', '.join(KINDS)}")]
    try:
        parsed = parse_submission(kind, path)
        problems = list(parsed.problems)
        source = test_list if test_list is not None else sample
        if source is not None:
            try:
                expected = expected_names(source, kind)
            except AbawError as err:
                problems.append(Problem(None, f"cannot read the {SPECS[kind].list_name}: {err}"))
            else:
                if parsed.rows or not any(p.line is None for p in problems):
                    problems.extend(_check_names(SPECS[kind], parsed.all_names, expected))
    except Exception as err:  # the validator's promise: a report, never a crash
        return [Problem(None, f"internal validator error ({type(err).__name__}: {err}); "
                              "please report it")]
    return sorted(problems, key=lambda p: (p.line if p.line is not None else 0))


def count_rows(kind: str, path: str | Path) -> int:
    """Number of data rows of an accepted submission (for the OK message)."""
    return parse_submission(kind, path).rows


# --- strict readers of submission files (for scoring) ---------------------------------------


@dataclass(frozen=True, eq=False)
class MtlPredictions:
    """An MTL submission as parsed for scoring (rows in file order)."""

    path: Path
    images: list[str]
    valence: np.ndarray  # float64 (N,)
    arousal: np.ndarray  # float64 (N,)
    expression: np.ndarray  # int64 (N,)
    aus: np.ndarray  # int64 (N, 12)

    def __len__(self) -> int:
        return len(self.images)


def _read_submission_strict(kind: str, path: str | Path) -> tuple[list[str], np.ndarray]:
    parsed = parse_submission(kind, path)
    fatal = sorted((p for p in parsed.problems if not p.tolerable),
                   key=lambda p: p.line if p.line is not None else 0)
    if fatal:
        raise FormatError(path, fatal[0].line, fatal[0].message)
    return parsed.names, parsed.values


def read_mtl_submission(path: str | Path) -> MtlPredictions:
    """Read an MTL submission strictly (every value must be one the server accepts)."""
    names, values = _read_submission_strict("mtl", path)
    return MtlPredictions(
        path=Path(path),
        images=names,
        valence=values[:, 0].copy(),
        arousal=values[:, 1].copy(),
        expression=values[:, 2].astype(np.int64),
        aus=values[:, 3:].astype(np.int64),
    )


def read_lsd_labels(path: str | Path) -> tuple[list[str], np.ndarray]:
    """An ``image,expression`` file (a submission or a truth file): names and int64 labels."""
    names, values = _read_submission_strict("lsd", path)
    return names, values[:, 0].astype(np.int64)


def read_per_video_submission(path: str | Path, task: str) -> tuple[list[str], np.ndarray]:
    """A 5th-edition-on per-video submission, read strictly: locations and values.

    Values: VA float64 ``(N, 2)``; EXPR / CE int64 ``(N,)``; AU int64 ``(N, 12)``.
    """
    if task not in vocab.PER_VIDEO_SUBMISSION_HEADERS:
        raise ConfigError(f"unknown task {task!r}; expected one of va, expr, au, ce")
    names, values = _read_submission_strict(task, path)
    if task == "va":
        return names, values
    if task in ("expr", "ce"):
        return names, values[:, 0].astype(np.int64)
    return names, values.astype(np.int64)
