"""Counts at zero or below are usage errors before anything runs (exit 2, one line naming the
option), not an endless run (Lightning's max_epochs -1), an empty table or a run folder."""

from __future__ import annotations

import argparse

import pytest

from abaw import cli
from abaw.argtypes import non_negative_int, positive_int
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
])
def test_bad_counts_stop_before_anything_runs(main, argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(message)
    assert list(tmp_path.iterdir()) == []  # no data, run folder or table was made
