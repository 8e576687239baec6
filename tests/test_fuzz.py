"""Property-based fuzzing (hypothesis) of every reader, the submission validator and
``abaw score``: whatever the bytes, the outcome is a value or a one-line
:class:`~abaw.errors.AbawError` (exit 0, 1 or 2 from the CLI), never another exception, exit 3
or a traceback; and a value changed out of its range is always rejected at its line.

Examples are derandomised (the same inputs on every run) and bounded so the whole module runs
in well under a minute; raise ``ABAW_FUZZ_EXAMPLES`` for a longer hunt.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abaw.cli import main
from abaw.errors import AbawError, FormatError
from abaw.formats import readers, submissions, writers
from abaw.formats.submissions import KINDS, validate_submission
from abaw.vocab import NUM_AUS, NUM_EXPRESSIONS

EXAMPLES = int(os.environ.get("ABAW_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

NAMES = [f"vid{i}/{k:05d}.jpg" for i in range(2) for k in range(1, 4)]
_RNG = np.random.default_rng(0)
_VA = np.round(_RNG.uniform(-1, 1, (len(NAMES), 2)), 3)
_EXPR = _RNG.integers(0, NUM_EXPRESSIONS, len(NAMES))
_AUS = _RNG.integers(0, 2, (len(NAMES), NUM_AUS))


def _valid_files(root: Path) -> dict[str, Path]:
    """One valid file of every format the readers take."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "mtl_annotations": writers.write_mtl_annotations(
            root / "ann.txt", NAMES, _VA[:, 0], _VA[:, 1], _EXPR, _AUS),
        "mtl_test_list": writers.write_mtl_test_list(root / "mtl_list.txt", NAMES),
        "mtl_submission": writers.write_mtl_submission(
            root / "mtl_sub.txt", NAMES, _VA[:, 0], _VA[:, 1], _EXPR, _AUS),
        "lsd_test_list": writers.write_lsd_test_list(root / "lsd_list.txt", NAMES),
        "lsd_labels": writers.write_lsd_labels(root / "lsd.txt", NAMES, _EXPR % 6),
        "va": writers.write_per_video_annotation(root / "va.txt", "va", _VA),
        "expr": writers.write_per_video_annotation(root / "expr.txt", "expr", _EXPR),
        "au": writers.write_per_video_annotation(root / "au.txt", "au", _AUS),
        "video_names": writers.write_test_video_names(root / "videos.txt", ["vid0", "vid1"]),
        "sample_va": writers.write_sample_file(root / "sample.txt", "va", NAMES),
        "va_submission": writers.write_per_video_submission(root / "va_sub.txt", "va", NAMES,
                                                            _VA),
    }
    (root / "hands.csv").write_text("image,hand,score\n" + "".join(
        f"{n},{k % 2},0.5\n" for k, n in enumerate(NAMES)))
    files["occlusion_csv"] = root / "hands.csv"
    (root / "pp.json").write_text('{"au_thresholds": [' + ", ".join(["0.5"] * NUM_AUS) + "]}")
    files["postprocess"] = root / "pp.json"
    (root / "rule.json").write_text('{"rule": "none"}')
    files["rule"] = root / "rule.json"
    return files


def _occlusion_csv(path: Path) -> object:
    from abaw.data.lsd import read_occlusion_csv

    return read_occlusion_csv(path)


def _postprocess(path: Path) -> object:
    from abaw.postprocess import load_postprocess

    return load_postprocess(path)


def _rule(path: Path) -> object:
    from abaw.lsd.occlusion import OcclusionRule

    return OcclusionRule.load(path)


READERS: dict[str, Callable[[Path], object]] = {
    "mtl_annotations": readers.read_mtl_annotations,
    "mtl_test_list": readers.read_mtl_test_list,
    "mtl_submission": submissions.read_mtl_submission,
    "lsd_test_list": readers.read_lsd_test_list,
    "lsd_labels": submissions.read_lsd_labels,
    "va": lambda p: readers.read_per_video_annotation(p, "va"),
    "expr": lambda p: readers.read_per_video_annotation(p, "expr"),
    "au": lambda p: readers.read_per_video_annotation(p, "au"),
    "video_names": readers.read_test_video_names,
    "sample_va": lambda p: readers.read_sample_file(p, "va"),
    "va_submission": lambda p: submissions.read_per_video_submission(p, "va"),
    "occlusion_csv": _occlusion_csv,
    "postprocess": _postprocess,
    "rule": _rule,
}

_WORK = Path(tempfile.mkdtemp(prefix="abaw-fuzz-"))
VALID = _valid_files(_WORK / "valid")
VALID_BYTES = {name: path.read_bytes() for name, path in VALID.items()}


def _write(data: bytes, name: str = "case.txt") -> Path:
    path = _WORK / name
    path.write_bytes(data)
    return path


def _read_or_abaw_error(reader: Callable[[Path], object], path: Path) -> AbawError | None:
    try:
        reader(path)
    except AbawError as err:
        assert "\n" not in str(err), str(err)
        return err
    return None


# --- mutations --------------------------------------------------------------------------------

_TOKENS = [b"", b",", b"\n", b"\r\n", b"\x00", b"\xff", b"-", b"+", b".", b"e", b"nan", b"inf",
           b"-5", b"-1", b"\xef\xbc\x91", b"\xd9\xa5", b" ", b"\t", b'"', b"\xef\xbb\xbf",
           b"[", b"{", b"9" * 400, b"1e999", b"0x10", b"1_0"]


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with a few splices: bytes deleted, replaced or inserted (tokens that trip
    parsers: separators, sentinels, non-ASCII digits, NUL, a BOM, huge numbers)."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 8)))
        insert = draw(st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=6)))
        data[start:end] = insert
    return bytes(data)


#: what a hand-edited number may hold: ASCII, fullwidth and Arabic-Indic digits, signs, dots
_NUMBERISH = st.text(alphabet="0123456789-+.eE \uff11\uff10\u0661\u0665\u06f3", min_size=0,
                     max_size=8)


@st.composite
def field_mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with one comma-separated field of one line replaced by number-like text."""
    lines = base.decode("utf-8").split("\n")
    row = draw(st.integers(0, max(0, len(lines) - 2)))
    fields = lines[row].split(",")
    fields[draw(st.integers(0, len(fields) - 1))] = draw(_NUMBERISH)
    lines[row] = ",".join(fields)
    return "\n".join(lines).encode("utf-8")


def _any_file(name: str) -> st.SearchStrategy[bytes]:
    base = VALID_BYTES[name]
    return st.one_of(st.binary(max_size=300), mutated(base), field_mutated(base))


# --- readers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(READERS))
def test_valid_files_read(name):
    assert _read_or_abaw_error(READERS[name], VALID[name]) is None


@pytest.mark.parametrize("name", sorted(READERS))
def test_readers_raise_only_one_line_abaw_errors(name):
    @FUZZ
    @given(_any_file(name))
    def check(data: bytes) -> None:
        _read_or_abaw_error(READERS[name], _write(data))

    check()


# --- the validator ----------------------------------------------------------------------------

_REFERENCE = {"mtl": VALID["mtl_test_list"], "lsd": VALID["lsd_test_list"]}


@FUZZ
@given(st.sampled_from(KINDS), st.data())
def test_validator_never_raises(kind: str, data: st.DataObject) -> None:
    base = VALID_BYTES["mtl_submission" if kind == "mtl" else
                       "lsd_labels" if kind == "lsd" else "va_submission"]
    raw = data.draw(st.one_of(st.binary(max_size=300), mutated(base), field_mutated(base)))
    reference = {"test_list": _REFERENCE[kind]} if kind in _REFERENCE else {"sample": NAMES}
    problems = validate_submission(kind, _write(raw), **reference)
    for problem in problems:
        assert "\n" not in problem.message
        assert "internal validator error" not in problem.message, problem.message


# --- out-of-range values are rejected at their line --------------------------------------------

_VA_OUT = st.one_of(st.floats(1.0, 1e6, exclude_min=True), st.floats(-1e6, -1.0, exclude_max=True)
                    .filter(lambda x: x != -5.0))
_CLASS_OUT = st.one_of(st.integers(NUM_EXPRESSIONS, 10**6), st.integers(-10**6, -2))
_AU_OUT = st.one_of(st.integers(2, 10**6), st.integers(-10**6, -2))


def _replace_field(text: str, line: int, column: int, value: str) -> str:
    lines = text.split("\n")
    fields = lines[line - 1].split(",")
    fields[column] = value
    lines[line - 1] = ",".join(fields)
    return "\n".join(lines)


@FUZZ
@given(st.integers(2, len(NAMES) + 1), st.sampled_from(["va", "expr", "au"]), st.data())
def test_out_of_range_value_rejected_at_its_line(line: int, task: str, data: st.DataObject):
    # MTL submission (validator and strict reader), MTL annotations (reader)
    if task == "va":
        column, value = data.draw(st.integers(1, 2)), repr(data.draw(_VA_OUT))
    elif task == "expr":
        column, value = 3, str(data.draw(_CLASS_OUT))
    else:
        column, value = data.draw(st.integers(4, 3 + NUM_AUS)), str(data.draw(_AU_OUT))
    sub = _write(_replace_field(VALID_BYTES["mtl_submission"].decode(), line, column, value)
                 .encode())
    problems = validate_submission("mtl", sub, test_list=NAMES)
    assert [p.line for p in problems] == [line], problems
    with pytest.raises(FormatError) as caught:
        submissions.read_mtl_submission(sub)
    assert caught.value.line == line
    ann = _write(_replace_field(VALID_BYTES["mtl_annotations"].decode(), line, column, value)
                 .encode(), "ann.txt")
    with pytest.raises(FormatError) as caught:
        readers.read_mtl_annotations(ann)
    assert caught.value.line == line
    # the per-video annotation of the same task
    per_video = VALID_BYTES[task].decode()
    pv_column = {"va": column - 1, "expr": 0, "au": column - 4}[task]
    path = _write(_replace_field(per_video, line, pv_column, value).encode(), "pv.txt")
    with pytest.raises(FormatError) as caught:
        readers.read_per_video_annotation(path, task)
    assert caught.value.line == line


# --- abaw score ---------------------------------------------------------------------------------


def _cli(*argv: object) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main([str(a) for a in argv])
    return status, err.getvalue()


@FUZZ
@given(st.sampled_from(["mtl", "lsd", "va"]), st.booleans(), st.data())
def test_score_exits_0_1_or_2_with_one_line(task: str, fuzz_truth: bool, data: st.DataObject):
    pred_name, truth_name = {"mtl": ("mtl_submission", "mtl_annotations"),
                             "lsd": ("lsd_labels", "lsd_labels"),
                             "va": ("va_submission", "va")}[task]
    pred_bytes, truth_bytes = VALID_BYTES[pred_name], VALID_BYTES[truth_name]
    if fuzz_truth and task != "va":
        truth_bytes = data.draw(_any_file(truth_name))
    elif not fuzz_truth:
        pred_bytes = data.draw(_any_file(pred_name))
    pred = _write(pred_bytes, "pred.txt")
    if task == "va":  # the truth is a folder of <video>.txt, 3 frames each
        folder = _WORK / "truth_va"
        folder.mkdir(exist_ok=True)
        lines = VALID_BYTES["va"].split(b"\n")
        first = b"\n".join(lines[:4]) + b"\n"
        (folder / "vid0.txt").write_bytes(data.draw(mutated(first)) if fuzz_truth else first)
        (folder / "vid1.txt").write_bytes(b"\n".join([lines[0], *lines[4:7]]) + b"\n")
        truth = folder
    else:
        truth = _write(truth_bytes, "truth.txt")
    status, err = _cli("score", task, pred, truth)
    assert status in (0, 1, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    if status == 2:
        assert sum(line.startswith("abaw: error:") for line in err.splitlines()) == 1, err
