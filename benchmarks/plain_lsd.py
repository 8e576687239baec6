"""The yardstick of the LSD track: a plain PyTorch script of the kind a participant writes in an
afternoon — no Lightning, no timm, no toolkit training code (only the official readers, writer
and scorer at the edges; the network, loader and normalisation are ``plain_mtl``'s).

The same 4 convolution blocks at 64 px as the plain MTL script with a 6-way head, trained from
scratch on the synthetic training tree only: AdamW with a cosine schedule over a fixed
wall-clock budget, horizontal flips, class-weighted cross-entropy (weights ∝ 1/count: about
half of the synthetic set is Sadness). The checkpoint of the last step is used (no selection on
validation). The hidden test truth is read only after the submission is written, to score it.

    python -m benchmarks.plain_lsd --data data/synth/lsd --minutes 8 --seed 0 --out runs/plain-lsd/s0

Prints one JSON line: validation and test macro F1 (and per class), training seconds, epochs.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from abaw.formats.readers import read_lsd_test_list, read_lsd_tree
from abaw.formats.submissions import read_lsd_labels
from abaw.formats.writers import write_lsd_submission
from abaw.metrics import lsd_f1
from abaw.vocab import LSD_CLASSES, NUM_LSD_CLASSES
from benchmarks.plain_mtl import block, load, norm, parse_args, train_for


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 256),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2))
        self.expr = nn.Linear(256, NUM_LSD_CLASSES)

    def forward(self, x):
        return self.expr(self.features(x))


@torch.no_grad()
def predict(net, x) -> np.ndarray:
    net.eval()
    return torch.cat([net(norm(x[i:i + 512])) for i in range(0, len(x), 512)]).argmax(1).numpy()


def scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    f1, per_class = lsd_f1(truth, pred)
    return {"f1": f1, **{f"f1_{name}": float(v) for name, v in zip(LSD_CLASSES, per_class)}}


def main() -> None:
    args = parse_args(__doc__, "data/synth/lsd", "runs/plain-lsd")
    root = args.data
    train = read_lsd_tree(root / "training_set_synthetic_images")
    val = read_lsd_tree(root / "validation_set_real_images")
    xt, xv = load(train.root, train.paths), load(val.root, val.paths)
    yt = torch.from_numpy(train.labels)
    counts = np.bincount(train.labels, minlength=NUM_LSD_CLASSES)
    weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / NUM_LSD_CLASSES, dtype=torch.float32)
    net = Net()
    seconds, epochs = train_for(net, xt, lambda out, idx: F.cross_entropy(out, yt[idx], weight=weight),
                                args.minutes)
    v = scores(val.labels, predict(net, xv))
    test_list = read_lsd_test_list(root / "LSD_Challenge_test_set_release.txt")
    distinct = list(dict.fromkeys(test_list))
    pred = predict(net, load(root / "test_set", distinct))
    where = {name: i for i, name in enumerate(distinct)}
    rows = np.array([where[name] for name in test_list])
    args.out.mkdir(parents=True, exist_ok=True)
    sub = write_lsd_submission(args.out / "submission.txt", test_list, pred[rows],
                               test_list=test_list)
    # the hidden truth, read only now that the submission is written
    truth_names, truth_labels = read_lsd_labels(root / "test_set_labels.txt")
    assert list(map(str, truth_names)) == list(map(str, test_list))
    t = scores(np.asarray(truth_labels), pred[rows])
    print(json.dumps({"seed": args.seed, "epochs": epochs, "train_s": round(seconds, 1),
                      "val": v, "test": t, "submission": str(sub)}))


if __name__ == "__main__":
    main()
