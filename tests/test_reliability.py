"""Regression tests of issue 10, "nothing lost, nothing silent": one test (or a few) per
numbered case, each reproducing what a hostile but ordinary user did.

Read-only targets use ``/sys`` (read-only even for root, which these tests may run as).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from abaw.cli import main
from abaw.errors import AbawError, FormatError
from abaw.fileio import atomic_write_text
from abaw.formats import readers, writers
from abaw.formats.submissions import validate_submission
from abaw.synth import generate, read_manifest
from abaw.vocab import MTL_SUBMISSION_HEADER, MTL_TEST_LIST_HEADER, NUM_AUS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from mtl_fixtures import make_mtl_data  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "mtl" / "base.yaml"
READ_ONLY = Path("/sys/abaw-reliability-test")  # mkdir fails there, root included


def _run(capsys, *argv: object) -> tuple[int, str, str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit_:  # an argparse usage error (a bad option value)
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _abaw(*argv: object) -> list[str]:
    return [sys.executable, "-m", "abaw.cli", *map(str, argv)]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("abaw: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- 1-4: abaw synth never loses a user's file ---------------------------------------------------


def test_1_regenerating_keeps_user_files_and_refuses(tmp_path, capsys):
    out = tmp_path / "s"
    generate(out, size="tiny", seed=1, workers=1, progress=False, layouts=("lsd",))
    mine = out / "lsd" / "mine.txt"
    mine.write_text("x\n")
    preview = out / "preview.png"  # never written by abaw synth
    preview.write_bytes(b"my own picture")
    status, _, err = _run(capsys, "synth", out, "--size", "tiny", "--seed", "2", "--quiet",
                          "--workers", "1")
    assert status == 2
    assert "lsd/mine.txt" in _one_error_line(err)
    assert mine.read_text() == "x\n" and preview.read_bytes() == b"my own picture"
    # once the foreign file is moved out, the regeneration replaces only its own files
    mine.rename(tmp_path / "mine.txt")
    seed1 = {p for p in (out / "lsd").rglob("*") if p.is_file()}
    manifest = generate(out, size="tiny", seed=2, workers=1, progress=False, layouts=("lsd",))
    assert manifest["reused"] is False and manifest["seed"] == 2
    assert preview.read_bytes() == b"my own picture"
    # exactly the new run's files: the old run's files it does not rewrite are gone
    now = {p.relative_to(out).as_posix() for p in (out / "lsd").rglob("*") if p.is_file()}
    assert now == set(read_manifest(out)["files"])
    assert {p.relative_to(out).as_posix() for p in seed1} != now


def test_1_derived_files_are_removed_only_when_recorded(tmp_path):
    from abaw.synth.generator import record_derived

    out = tmp_path / "s"
    generate(out, size="tiny", seed=0, workers=1, progress=False, layouts=("lsd",))
    (out / "oracle.json").write_text("{}")
    record_derived(out, "oracle.json")  # as oracle_report does after writing it
    assert read_manifest(out)["derived"] == ["oracle.json"]
    generate(out, size="tiny", seed=3, workers=1, progress=False, layouts=("lsd",))
    assert not (out / "oracle.json").exists()  # computed from the old data: removed


def test_2_empty_output_path_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(capsys, "synth", "", "--size", "tiny", "--quiet")
    assert status == 2 and "empty path" in _one_error_line(err)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AbawError, match="empty path"):
        generate("", size="tiny", progress=False)


#: one small layout through the same generate() (and lock) as `abaw synth`, to keep it quick
_SYNTH_LSD = ("import sys; from abaw.synth import generate; m = generate(sys.argv[1], "
              "size='tiny', workers=1, progress=False, layouts=('lsd',)); "
              "print('reused' if m['reused'] else 'wrote')")


def test_3_a_second_run_waits_for_the_lock_then_reuses(tmp_path):
    from abaw.synth.generator import synth_lock

    out = tmp_path / "s"
    with synth_lock(out):
        process = subprocess.Popen(
            [sys.executable, "-c", _SYNTH_LSD, str(out)], env=_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said = process.stderr.readline()  # blocks until it says it waits (or exits)
        assert "being written by another `abaw synth`; waiting" in said, said
        time.sleep(0.5)
        assert process.poll() is None  # still waiting for the lock
        assert not (out / "lsd").exists()  # and wrote nothing meanwhile
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert stdout.strip() == "wrote"  # the first to hold the lock generates
    assert read_manifest(out)["complete"] is True


def test_3_concurrent_runs_both_succeed(tmp_path):
    out = tmp_path / "s"
    runs = [subprocess.Popen([sys.executable, "-c", _SYNTH_LSD, str(out)], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(p.communicate(timeout=180), p.returncode) for p in runs]
    assert [code for _, code in results] == [0, 0], results
    assert sum("reused" in out_text for (out_text, _), _ in results) == 1
    assert read_manifest(out)["images"] > 0


def test_4_stale_temporaries_of_our_naming_are_cleaned(tmp_path):
    target = tmp_path / "submission.txt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".submission.txt.{dead.pid}-0123456789abcdef.tmp"
    live = tmp_path / f".submission.txt.{os.getpid()}-fedcba9876543210.tmp"
    foreign = tmp_path / ".submission.txt.backup.tmp"  # not our naming: a user's file
    for path in (stale, live, foreign):
        path.write_text("partial")
    atomic_write_text(target, "done\n")
    assert target.read_text() == "done\n"
    assert not stale.exists()
    assert live.exists() and foreign.exists()


# --- 5: truncated images are unreadable, not silently half-grey ------------------------------------


def _encoded(suffix: str) -> bytes:
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.stack([yy * 4, xx * 4, (yy + xx) * 2], axis=-1).astype(np.uint8)
    ok, buf = cv2.imencode(suffix, image)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_5_truncated_images_are_unreadable(tmp_path, suffix):
    from abaw.data.images import is_truncated, load_rgb

    data = _encoded(suffix)
    whole, cut = tmp_path / f"whole{suffix}", tmp_path / f"cut{suffix}"
    whole.write_bytes(data)
    cut.write_bytes(data[: int(len(data) * 0.55)])
    assert load_rgb(whole).shape == (64, 64, 3)
    assert not is_truncated(data) and is_truncated(cut.read_bytes())
    assert load_rgb(cut) is None


def test_5_truncated_test_image_is_refused_unless_grey(tmp_path):
    from abaw.data.mtl import MtlImageListDataset
    from abaw.data.transforms import eval_transforms

    data = _encoded(".jpg")
    (tmp_path / "a.jpg").write_bytes(data[: len(data) // 2])
    refuse = MtlImageListDataset(tmp_path, ["a.jpg"], eval_transforms(32), 32, "error")
    with pytest.raises(AbawError, match="cannot be read"):
        refuse[0]
    grey = MtlImageListDataset(tmp_path, ["a.jpg"], eval_transforms(32), 32, "grey")
    assert grey[0]["image"].shape == (3, 32, 32)


# --- 6: files keep the permissions a plain write would give ----------------------------------------


def test_6_atomic_writes_respect_umask_and_existing_mode(tmp_path):
    old = os.umask(0o022)
    try:
        new = atomic_write_text(tmp_path / "new.txt", "x\n")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        os.umask(0o027)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "b.txt", "x").stat().st_mode) == 0o640
        existing = tmp_path / "existing.txt"
        existing.write_text("old")
        existing.chmod(0o664)
        atomic_write_text(existing, "new")
        assert stat.S_IMODE(existing.stat().st_mode) == 0o664
    finally:
        os.umask(old)


# --- 7: nothing scored or computed is never silent --------------------------------------------------

VA_HEADER = "valence,arousal"


def _per_video(folder: Path, rows: list[tuple[float, float]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)  # written by hand: the writer refuses half rows
    (folder / "vid.txt").write_text(VA_HEADER + "\n" + "".join(f"{v},{a}\n" for v, a in rows))
    return folder


def _va_submission(path: Path, rows: list[tuple[float, float]]) -> Path:
    locations = [f"vid/{k:05d}.jpg" for k in range(1, len(rows) + 1)]
    values = np.array(rows)
    return writers.write_per_video_submission(path, "va", locations, values)


def test_7_half_labelled_va_rows_are_reported(tmp_path, capsys):
    truth = _per_video(tmp_path / "truth", [(0.5, 0.5), (0.2, -5), (-0.5, -0.5), (0.1, 0.3)])
    pred = _va_submission(tmp_path / "pred.txt", [(0.5, 0.5), (0.2, 0.9), (-0.5, -0.5), (0, 0)])
    status, out, err = _run(capsys, "score", "va", pred, truth, "--json")
    assert status == 0 and "score" in json.loads(out)
    assert "1 row(s) label only one of valence and arousal (first: vid/00002.jpg)" in err


def test_7_nothing_labelled_is_an_error(tmp_path, capsys):
    truth = _per_video(tmp_path / "truth", [(-5, -5), (-5, -5)])
    pred = _va_submission(tmp_path / "pred.txt", [(0.1, 0.1), (0.2, 0.2)])
    status, out, err = _run(capsys, "score", "va", pred, truth)
    assert status == 2 and out == ""
    assert "nothing to score" in _one_error_line(err)


def test_7_superres_with_only_corrupt_inputs_exits_1(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    data = _encoded(".jpg")
    (src / "a.jpg").write_bytes(data[: len(data) // 2])
    (src / "b.png").write_bytes(b"not a png")
    status, _, err = _run(capsys, "lsd", "superres", src, tmp_path / "dst", "--quiet",
                          "--cache-dir", tmp_path / "cache")
    assert status == 1
    assert "all 2 image(s)" in err and "nothing was computed" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = _run(capsys, "lsd", "superres", empty, tmp_path / "dst2", "--quiet")
    assert status == 2 and "no images found" in _one_error_line(err)


# --- 8: non-ASCII digits --------------------------------------------------------------------------


def test_8_non_ascii_digits_are_rejected_with_their_line(tmp_path, capsys):
    names = ["v/00001.jpg", "v/00002.jpg"]
    test_list = writers.write_mtl_test_list(tmp_path / "list.txt", names)
    zeros = ",".join(["0"] * NUM_AUS)
    sub = tmp_path / "sub.txt"
    sub.write_text(f"{MTL_SUBMISSION_HEADER}\nv/00001.jpg,0.1,0.2,1,{zeros}\n"
                   f"v/00002.jpg,0.1,0.2,\uff11,{zeros}\n", encoding="utf-8")
    problems = validate_submission("mtl", sub, test_list=test_list)
    assert [(p.line, "not an integer" in p.message) for p in problems] == [(3, True)]
    status, out, _ = _run(capsys, "validate", "mtl", sub, "--test-list", test_list)
    assert status == 1 and f"{sub}:3: expression" in out
    # an annotation / per-video truth with Arabic-Indic digits: file and line
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "vid.txt").write_text(f"{VA_HEADER}\n0.5,0.5\n\u0660.\u0665,0.1\n",
                                   encoding="utf-8")
    with pytest.raises(FormatError) as caught:
        readers.read_per_video_annotation(truth / "vid.txt", "va")
    assert caught.value.line == 3
    pred = _va_submission(tmp_path / "pred.txt", [(0.5, 0.5), (0.5, 0.1)])
    status, _, err = _run(capsys, "score", "va", pred, truth)
    assert status == 2 and f"{truth / 'vid.txt'}:3: valence" in _one_error_line(err)


# --- 9: abaw synth arguments and targets ---------------------------------------------------------


def test_9_synth_bad_seed_target_under_a_file_and_read_only(tmp_path, capsys):
    status, _, err = _run(capsys, "synth", tmp_path / "s", "--seed", "-1", "--size", "tiny")
    assert status == 2 and "Traceback" not in err  # argparse: its usage, then one error line
    assert err.splitlines()[-1] == "abaw synth: error: argument --seed: must be 0 or more, got -1"
    (tmp_path / "file").write_text("x")
    status, _, err = _run(capsys, "synth", tmp_path / "file" / "s", "--size", "tiny", "--quiet")
    assert status == 2 and "is a file" in _one_error_line(err)
    status, _, err = _run(capsys, "synth", READ_ONLY, "--size", "tiny", "--quiet")
    assert status == 2 and str(READ_ONLY) in _one_error_line(err)


# --- 10-12: training CLI mistakes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny MTL data and a one-step checkpoint (vit_test)."""
    root = tmp_path_factory.mktemp("tiny_run")
    data = make_mtl_data(root / "data", n_train=8, n_val=4, n_test=4)
    assert main(["mtl", "fit", *_fit_args(data, root / "run")]) == 0
    return data, root / "run" / "checkpoints" / "last.ckpt"


def _fit_args(data: Path, run: Path, *extra: str) -> list[str]:
    return ["--config", str(DEFAULT_CONFIG), "--data.data_root", str(data),
            "--data.img_size", "32", "--data.batch_size", "4", "--data.num_workers", "0",
            "--data.augment", "light", "--model.backbone", "vit_test",
            "--trainer.default_root_dir", str(run), "--trainer.max_steps", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            *extra]


@pytest.mark.parametrize("extra, message", [
    (("--data.img_size", "-3"), "data.img_size must be a positive integer, got -3"),
    (("--data.batch_size", "0"), "data.batch_size must be a positive integer, got 0"),
])
def test_10_bad_sizes(tiny_run, tmp_path, capsys, extra, message):
    status, _, err = _run(capsys, "mtl", "fit", *_fit_args(tiny_run[0], tmp_path / "r", *extra))
    assert status == 2 and message in _one_error_line(err)


def test_10_binary_config(tmp_path, capsys):
    config = tmp_path / "binary.yaml"
    config.write_bytes(bytes(range(256)))
    status, _, err = _run(capsys, "mtl", "fit", "--config", config)
    assert status == 2 and "not a YAML text file" in _one_error_line(err)


def test_11_bad_checkpoints(tiny_run, tmp_path, capsys):
    data, _ = tiny_run
    empty, junk = tmp_path / "empty.ckpt", tmp_path / "junk.ckpt"
    empty.write_bytes(b"")
    junk.write_bytes(b"hello world")
    for path, message in ((tmp_path / "nope.ckpt", "no such file"), (empty, "is empty"),
                          (junk, "not a checkpoint written by abaw fit")):
        status, _, err = _run(capsys, "mtl", "fit", *_fit_args(data, tmp_path / "r", "--ckpt_path",
                                                        path))
        assert status == 2 and message in _one_error_line(err)
        assert "weights_only" not in err


def test_11_resuming_with_another_backbone_says_so(tiny_run, tmp_path, capsys, caplog):
    data, last = tiny_run
    logging.getLogger("abaw").addHandler(caplog.handler)  # the abaw logger does not propagate
    try:
        status, _, err = _run(capsys, "mtl", "fit", *_fit_args(
            data, tmp_path / "r", "--model.backbone", "efficientnet_test", "--ckpt_path", last,
            "--trainer.max_steps", "2"))
    finally:
        logging.getLogger("abaw").removeHandler(caplog.handler)
    assert status == 0
    assert "was trained with model.backbone='vit_test': using that" in caplog.text
    assert "Missing key" not in err + caplog.text


def test_11_state_dict_mismatch_is_one_line():
    from abaw.training.cli import state_dict_mismatch

    err = RuntimeError('Error(s) in loading state_dict for MtlModule:\n\tMissing key(s) in '
                       'state_dict: "a.w", "a.b", "c". \n\tUnexpected key(s) in state_dict: '
                       '"z". \n\tsize mismatch for q: copying ...')
    message = str(state_dict_mismatch(err, "x.ckpt"))
    assert "\n" not in message
    assert "(3 missing, 1 unexpected, 1 differently shaped weights)" in message
    assert state_dict_mismatch(RuntimeError("other"), "x.ckpt") is None


def test_12_submission_output_dir_file_or_read_only(tiny_run, tmp_path, capsys):
    data, last = tiny_run
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    status, _, err = _run(capsys, "mtl", "predict", *_fit_args(
        data, tmp_path / "p", "--ckpt_path", last, "--submission.output_dir", a_file))
    assert status == 2 and "it is a file" in _one_error_line(err)
    assert a_file.read_text() == "x"
    # read-only: the same check, before any image is predicted (the writer's setup hook)
    from types import SimpleNamespace

    from abaw.training.writer import LsdPredictionWriter, MtlPredictionWriter

    for writer in (MtlPredictionWriter, LsdPredictionWriter):
        with pytest.raises(AbawError, match=str(READ_ONLY)):
            writer(output_dir=str(READ_ONLY)).setup(SimpleNamespace(is_global_zero=True), None,
                                                    "predict")


def test_12_lsd_device_hands_out_and_devices(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(_encoded(".jpg"))
    status, _, err = _run(capsys, "lsd", "superres", src, tmp_path / "dst", "--device",
                          "banana", "--quiet")
    assert status == 2 and "'banana' is not a device name" in _one_error_line(err)
    status, _, err = _run(capsys, "lsd", "hands", src, "--out", tmp_path, "--quiet")
    assert status == 2 and "is a folder" in _one_error_line(err)
    status, out, _ = _run(capsys, "validate", "lsd", "/dev/zero", "--test-list", "/dev/zero")
    assert status == 2
    status, _, err = _run(capsys, "score", "lsd", "/dev/zero", "/dev/zero")
    assert status == 2 and "is a device" in _one_error_line(err)


# --- 13: messages say what is wrong ---------------------------------------------------------------


def test_13_value_shown_as_written(tmp_path):
    path = writers.write_per_video_annotation(tmp_path / "v.txt", "va", np.array([[0.5, 0.5]]))
    path.write_text(f"{VA_HEADER}\n-5.0000001,0.5\n")
    with pytest.raises(FormatError, match=r"valence -5\.0000001 is not in"):
        readers.read_per_video_annotation(path, "va")


def test_13_symlink_loop_is_named(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    status, _, err = _run(capsys, "score", "lsd", loop, loop)
    line = _one_error_line(err)
    assert status == 2 and "symbolic links" in line and "no such file" not in line


def test_13_plus_one_says_what_is_accepted(tmp_path):
    zeros = ",".join(["0"] * NUM_AUS)
    sub = tmp_path / "sub.txt"
    sub.write_text(f"{MTL_SUBMISSION_HEADER}\nv/00001.jpg,0.1,0.2,+1,{zeros}\n")
    problems = validate_submission("mtl", sub, test_list=["v/00001.jpg"])
    assert len(problems) == 1
    assert "not +1" in problems[0].message and "ASCII digits" in problems[0].message


def test_13_test_list_with_trailing_spaces(tmp_path):
    names = ["v/00001.jpg", "v/00002.jpg"]
    listed = tmp_path / "list.txt"
    listed.write_text(f"{MTL_TEST_LIST_HEADER} \n" + "".join(f"{n}  \t\n" for n in names))
    assert readers.read_mtl_test_list(listed) == names
    sub = writers.write_mtl_submission(tmp_path / "sub.txt", names, [0.1, 0.2], [0.1, 0.2],
                                       [1, 2], np.zeros((2, NUM_AUS), int))
    assert validate_submission("mtl", sub, test_list=listed) == []


# --- 14: Ctrl-C exits 130, abaw fit included ------------------------------------------------------


def _interrupt_when(process: subprocess.Popen, ready, timeout: float = 120) -> tuple[int, str]:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.2)
    assert process.poll() is None, "finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()  # never leave a training process behind
        process.communicate()
        raise
    return process.returncode, stderr


@pytest.mark.slow  # a real training subprocess: timed out twice while other jobs held the cores
def test_14_ctrl_c_on_fit_exits_130(tmp_path):
    data = make_mtl_data(tmp_path / "data", n_train=8, n_val=4, n_test=4)
    run = tmp_path / "run"
    process = subprocess.Popen(
        _abaw("mtl", "fit", *_fit_args(data, run, "--trainer.max_steps", "100000",
                                "--trainer.max_epochs", "-1",
                                "--last_checkpoint.every_n_train_steps", "1")),
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    code, stderr = _interrupt_when(process, lambda: (run / "checkpoints" / "last.ckpt").exists())
    assert code == 130, stderr[-2000:]
    assert "abaw: interrupted" in stderr


@pytest.mark.slow  # timing-dependent: exited 0 once under load (the run finished first)
def test_14_ctrl_c_on_synth_exits_130(tmp_path):
    out = tmp_path / "s"
    process = subprocess.Popen(_abaw("synth", out, "--workers", "1", "--quiet"), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    code, stderr = _interrupt_when(process, lambda: (out / "mtl").exists())
    assert code == 130 and "abaw: interrupted" in stderr


# --- internal errors: one line, ABAW_DEBUG for the traceback ---------------------------------------


def test_internal_error_is_one_line_and_names_abaw_debug(monkeypatch, capsys):
    import abaw.commands.score as score

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(score, "run", broken)
    monkeypatch.delenv("ABAW_DEBUG", raising=False)
    status, _, err = _run(capsys, "score", "lsd", "a", "b")
    assert status == 3
    assert err.count("\n") == 1 and "ABAW_DEBUG=1" in err and "boom second line" in err
    monkeypatch.setenv("ABAW_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["score", "lsd", "a", "b"])


def test_os_errors_naming_a_file_are_exit_2(monkeypatch, capsys):
    import abaw.commands.score as score

    def denied(args):
        raise PermissionError(13, "Permission denied", "/some/file")

    monkeypatch.setattr(score, "run", denied)
    monkeypatch.delenv("ABAW_DEBUG", raising=False)
    status, _, err = _run(capsys, "score", "lsd", "a", "b")
    assert status == 2 and _one_error_line(err) == "abaw: error: /some/file: Permission denied"


def test_sigterm_during_training_ends_with_143_not_0(monkeypatch, capsys):
    # regression: Lightning turns SIGTERM inside trainer.fit into SIGTERMException, a
    # SystemExit without a code, so a killed `make mtl` / `abaw mtl fit` exited 0 as if done
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    import abaw.training.cli
    from abaw.runner import guarded

    def killed(*args, **kwargs):
        raise SIGTERMException

    assert guarded(killed) == (143, None)
    assert capsys.readouterr().err.splitlines() == [
        "abaw: terminated (SIGTERM) — rerun the same command to resume from the last checkpoint"]
    monkeypatch.setattr(abaw.training.cli, "run_lightning_cli", killed)
    assert main(["mtl", "fit"]) == 143
    assert capsys.readouterr().err.splitlines() == ["abaw: terminated (SIGTERM)"]
    # any other SystemExit (argparse's usage errors) keeps its own status
    with pytest.raises(SystemExit) as exit_:
        guarded(lambda: sys.exit(2))
    assert exit_.value.code == 2
