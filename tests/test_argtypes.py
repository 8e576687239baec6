"""Counts at zero or below are usage errors before anything runs (exit 2, one line naming the
option), not an endless run (Lightning's max_epochs -1), an empty table or a run folder."""

from __future__ import annotations

import argparse

import pytest

from abaw import cli, runner
from abaw.argtypes import non_negative_int, positive_int
from abaw.errors import AbawError
from abaw.tracks.lsd import LSD
from abaw.tracks.mtl import MTL
from challenges import ablate, lsd_ablation, mtl_baselines


def test_the_types():
    assert positive_int("3") == 3 and positive_int(" 12 ") == 12
    assert non_negative_int("0") == 0
    for bad, message in (("0", "must be 1 or more, got 0"), ("-1", "must be 1 or more, got -1"),
                         ("2.5", "not an integer: '2.5'"), ("", "not an integer: ''")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            positive_int(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="must be 0 or more, got -3"):
        non_negative_int("-3")


@pytest.mark.parametrize("main, argv, message", [
    (ablate.main, ["--epochs", "0"], "argument --epochs: must be 1 or more, got 0"),
    (ablate.main, ["--lsd-epochs", "-1"], "argument --lsd-epochs: must be 1 or more, got -1"),
    (ablate.main, ["--train-limit", "-5"], "argument --train-limit: must be 0 or more, got -5"),
    (ablate.main, ["--lsd-img-size", "0"], "argument --lsd-img-size: must be 1 or more, got 0"),
    (ablate.main, ["--sr-workers", "0"], "argument --sr-workers: must be 1 or more, got 0"),
    (mtl_baselines.main, ["--epochs", "-1"], "argument --epochs: must be 1 or more, got -1"),
    (lsd_ablation.main, ["--epochs", "0"], "argument --epochs: must be 1 or more, got 0"),
    (lsd_ablation.main, ["--img-size", "-64"], "argument --img-size: must be 1 or more, got -64"),
    (lsd_ablation.main, ["--train-limit", "x"], "argument --train-limit: not an integer: 'x'"),
    (lambda argv: cli.main(["run", "lsd", *argv]), ["--train-limit", "-3"],
     "argument --train-limit: must be 0 or more, got -3"),
    (lambda argv: cli.main(["run", "lsd", *argv]), ["--sr-workers", "0"],
     "argument --sr-workers: must be 1 or more, got 0"),
    (lambda argv: cli.main(["run", "mtl", *argv]), ["--seed", "-2"],
     "argument --seed: must be 0 or more, got -2"),
    (lambda argv: cli.main(["synth", "out", *argv]), ["--workers", "0"],
     "argument --workers: must be 1 or more, got 0"),
    (lambda argv: cli.main(["synth", "out", *argv]), ["--seed", "-1"],
     "argument --seed: must be 0 or more, got -1"),
    (lambda argv: cli.main(["lsd", "superres", "a", "b", *argv]), ["--size", "0"],
     "argument --size: must be 1 or more, got 0"),
    (lambda argv: cli.main(["lsd", "superres", "a", "b", *argv]), ["--batch", "-4"],
     "argument --batch: must be 1 or more, got -4"),
    (lambda argv: cli.main(["lsd", "superres", "a", "b", *argv]), ["--tile", "-1"],
     "argument --tile: must be 0 or more, got -1"),
    (lambda argv: cli.main(["lsd", "superres", "a", "b", *argv]), ["--workers", "0"],
     "argument --workers: must be 1 or more, got 0"),
])
def test_bad_counts_stop_before_anything_runs(main, argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(message)
    assert list(tmp_path.iterdir()) == []  # no data, run folder or table was made


@pytest.mark.parametrize("text, message", [
    ("trainer:\n  max_epochs: 7\n", None),
    ("trainer: {}\n", "cannot read trainer.max_epochs (no key 'max_epochs')"),
    ("", "cannot read trainer.max_epochs (not a mapping)"),
    ("trainer: 3\n", "cannot read trainer.max_epochs (not a mapping)"),
    ("trainer: [1\n", "cannot read trainer.max_epochs (ParserError)"),
    ("trainer:\n  max_epochs: -1\n", "trainer.max_epochs must be a whole number ≥ 1, got -1"),
    ("trainer:\n  max_epochs: 2.5\n", "trainer.max_epochs must be a whole number ≥ 1, got 2.5"),
    ("trainer:\n  max_epochs: true\n", "trainer.max_epochs must be a whole number ≥ 1, got True"),
    (b"\xff\xfe", "cannot read trainer.max_epochs (UnicodeDecodeError)"),
    (None, "cannot read trainer.max_epochs (FileNotFoundError)"),
])
def test_every_table_reads_its_recipe_epochs_or_says_why_not(text, message, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.setattr(runner, "CONFIG_DIR", tmp_path / "configs")
    tables = {"mtl": (ablate.main, "make ablate"), "lsd": (lsd_ablation.main, "make lsd-ablation")}
    for challenge, track in ((MTL, "mtl"), (LSD, "lsd")):
        config = tmp_path / f"configs/{track}/base.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            config.write_bytes(text)
        elif text is not None:
            config.write_text(text, encoding="utf-8")
        if message is None:
            assert challenge.base_epochs() == 7
            continue
        with pytest.raises(AbawError) as err:
            challenge.base_epochs()
        assert str(err.value) == f"{config}: {message}"
        mains = [tables[track]] + ([(mtl_baselines.main, "make mtl-baselines")]
                                   if track == "mtl" else [])
        for main, prog in mains:
            with pytest.raises(SystemExit) as exit_:
                main(["--read-only"] if main is ablate.main else [])
            assert exit_.value.code == 2
            assert capsys.readouterr().err.splitlines()[-1] == (
                f"{prog}: error: {config}: {message}; give --epochs")
