"""No data loss: every command that writes leaves an unrelated file in its output folder
alone, and a write killed at any moment (SIGKILL) leaves the old complete file or the new
complete file, never a mix or a truncated one."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from abaw.cli import main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from mtl_fixtures import make_mtl_data  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "mtl" / "base.yaml"
UNRELATED = "my_notes.txt"


def _plant(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / UNRELATED
    path.write_text("keep me\n")
    return path


def test_every_writing_command_keeps_unrelated_files(tmp_path, monkeypatch):
    monkeypatch.setenv("ABAW_CACHE_DIR", str(tmp_path / "cache"))
    planted = []
    # abaw synth (twice: the second run regenerates another seed over the first)
    synth = tmp_path / "synth"
    planted.append(_plant(synth))
    for seed in ("0", "1"):
        assert main(["synth", str(synth), "--size", "tiny", "--seed", seed, "--workers", "1",
                     "--quiet", "--preview"]) == 0
    # abaw assets fetch (the weight cache)
    planted.append(_plant(tmp_path / "cache"))
    assert main(["assets", "fetch", "realesr-compact-x4"]) == 0
    # abaw lsd superres SRC DST (DST holds the user's file)
    src = tmp_path / "src"
    src.mkdir()
    image = np.full((16, 16, 3), 90, np.uint8)
    assert cv2.imwrite(str(src / "a.jpg"), image)
    dst = tmp_path / "dst"
    planted.append(_plant(dst))
    assert main(["lsd", "superres", str(src), str(dst), "--size", "16", "--quiet"]) == 0
    assert (dst / "a.jpg").is_file()
    # abaw fit / predict: the run folder and the submission folder
    data = make_mtl_data(tmp_path / "data", n_train=8, n_val=4, n_test=4)
    run, out = tmp_path / "run", tmp_path / "submission"
    planted += [_plant(run), _plant(run / "checkpoints"), _plant(out)]
    args = ["--config", str(DEFAULT_CONFIG), "--data.data_root", str(data),
            "--data.img_size", "32", "--data.batch_size", "4", "--data.num_workers", "0",
            "--model.backbone", "vit_test", "--trainer.default_root_dir", str(run),
            "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
    assert main(["mtl", "fit", *args]) == 0
    assert main(["mtl", "predict", *args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                 "--submission.output_dir", str(out)]) == 0
    assert (out / "submission.txt").is_file()
    for path in planted:
        assert path.read_text() == "keep me\n", path


# --- SIGKILL during an atomic write ------------------------------------------------------------

_WRITER = """
import sys
from abaw.fileio import atomic_write_bytes
target, n = sys.argv[1], int(sys.argv[2])
payloads = [bytes([65 + i]) * (n + i * 997) for i in range(2)]
atomic_write_bytes(target, payloads[0])
print("ready", flush=True)
i = 1
while True:
    atomic_write_bytes(target, payloads[i % 2])
    i += 1
"""


def test_sigkill_during_atomic_write_leaves_a_complete_file(tmp_path):
    size = 1_000_000
    complete = {hashlib.sha256(bytes([65 + i]) * (size + i * 997)).hexdigest() for i in range(2)}
    target = tmp_path / "submission.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH",
                                                                                    "")]))
    rng = random.Random(0)
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(size)],
                                   env=env, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert hashlib.sha256(target.read_bytes()).hexdigest() in complete
    # what the killed writers left behind is cleaned by the next write
    from abaw.fileio import atomic_write_bytes

    atomic_write_bytes(target, b"final\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.txt"]
