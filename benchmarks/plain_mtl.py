"""The yardstick of the MTL track: a plain PyTorch script of the kind a participant writes in an
afternoon — no Lightning, no timm, no toolkit training code (only the official readers,
writer and scorer at the edges).

4 convolution blocks at 64 px, AdamW with a cosine schedule over a fixed wall-clock budget,
horizontal flips, masked losses (1 - CCC for VA, cross-entropy for expression, BCE for AUs),
per-AU thresholds tuned on validation. The hidden test truth is read only after the
submission is written, to score it.

    python -m benchmarks.plain_mtl --data data/synth/mtl --minutes 8 --seed 0 --out runs/plain/s0

Prints one JSON line: validation and test P_MTL and their terms, training seconds, epochs.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from abaw.formats.readers import read_mtl_annotations, read_mtl_test_list
from abaw.formats.writers import write_mtl_submission
from abaw.metrics import mtl_score
from abaw.postprocess import apply_au_thresholds, fit_au_thresholds

SIZE = 64


def load(root: Path, images) -> torch.Tensor:
    out = np.zeros((len(images), SIZE, SIZE, 3), np.uint8)
    for i, name in enumerate(images):
        image = cv2.imread(str(root / name))[:, :, ::-1]
        out[i] = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def block(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 256),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2))
        self.va, self.expr, self.au = nn.Linear(256, 2), nn.Linear(256, 8), nn.Linear(256, 12)

    def forward(self, x):
        h = self.features(x)
        return torch.tanh(self.va(h)), self.expr(h), self.au(h)


def ccc_loss(pred, true):
    pm, tm = pred.mean(0), true.mean(0)
    cov = ((pred - pm) * (true - tm)).mean(0)
    ccc = 2 * cov / (pred.var(0, unbiased=False) + true.var(0, unbiased=False) + (pm - tm) ** 2 + 1e-8)
    return (1 - ccc).mean()


def losses(out, va, expr, au):
    pva, pex, pau = out
    total = pva.sum() * 0
    m = (va > -5).all(1)
    if m.sum() > 1:
        total = total + ccc_loss(pva[m], va[m])
    m = expr >= 0
    if m.any():
        total = total + F.cross_entropy(pex[m], expr[m])
    m = au >= 0
    if m.any():
        total = total + F.binary_cross_entropy_with_logits(pau[m], au[m].float())
    return total


def norm(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - 0.5) / 0.25


@torch.no_grad()
def predict(net, x):
    net.eval()
    outs = [net(norm(x[i:i + 512])) for i in range(0, len(x), 512)]
    va = torch.cat([o[0] for o in outs]).numpy()
    expr = torch.cat([o[1] for o in outs]).argmax(1).numpy()
    au = torch.cat([torch.sigmoid(o[2]) for o in outs]).numpy()
    return va, expr, au


def parse_args(doc: str, data: str, out: str) -> argparse.Namespace:
    """The command line both plain scripts share; seeds torch and numpy."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(data))
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(out))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    return args


def train_for(net: nn.Module, images: torch.Tensor, loss_of, minutes: float) -> tuple[float, int]:
    """AdamW (lr 2e-3, weight decay 0.05), batches of 64 with horizontal flips, the learning
    rate on a cosine over the wall-clock budget; ``loss_of(outputs, batch indices)``.
    Returns (training seconds, epochs started)."""
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
    budget, start, epochs = minutes * 60, time.time(), 0
    while time.time() - start < budget:
        net.train()
        for idx in torch.randperm(len(images)).split(64):
            frac = min(1.0, (time.time() - start) / budget)
            for g in opt.param_groups:
                g["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * frac))
            x = norm(images[idx])
            flip = torch.rand(len(x)) < 0.5
            x[flip] = x[flip].flip(3)
            loss = loss_of(net(x), idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if time.time() - start >= budget:
                break
        epochs += 1
    return time.time() - start, epochs


def main() -> None:
    args = parse_args(__doc__, "data/synth/mtl", "runs/plain")
    root = args.data
    train = read_mtl_annotations(root / "training_set_annotations.txt")
    val = read_mtl_annotations(root / "validation_set_annotations.txt")
    xt = load(root / "cropped_aligned", train.images)
    xv = load(root / "cropped_aligned", val.images)
    va_t = torch.from_numpy(np.where(train.va_mask[:, None], train.va, -5).astype(np.float32))
    ex_t = torch.from_numpy(np.asarray(train.expression, np.int64))
    au_t = torch.from_numpy(np.asarray(train.aus, np.int64))
    net = Net()
    seconds, epochs = train_for(net, xt, lambda out, idx: losses(out, va_t[idx], ex_t[idx], au_t[idx]),
                                args.minutes)
    va, expr, au = predict(net, xv)
    thresholds = fit_au_thresholds(val.aus, au)
    v = mtl_score(val.va, va, val.expression, expr, val.aus, apply_au_thresholds(au, thresholds))
    test_list = read_mtl_test_list(root / "MTL_Challenge_test_set_release.txt")
    distinct = list(dict.fromkeys(test_list))
    va, expr, au = predict(net, load(root / "test" / "cropped_aligned", distinct))
    where = {name: i for i, name in enumerate(distinct)}
    rows = np.array([where[name] for name in test_list])
    args.out.mkdir(parents=True, exist_ok=True)
    sub = write_mtl_submission(args.out / "submission.txt", test_list, va[rows, 0], va[rows, 1],
                               expr[rows], apply_au_thresholds(au[rows], thresholds),
                               test_list=test_list)
    # the hidden truth, read only now that the submission is written
    truth = read_mtl_annotations(root / "test_set_annotations.txt")
    assert list(map(str, truth.images)) == list(map(str, test_list))
    t = mtl_score(truth.va, va[rows], truth.expression, expr[rows], truth.aus,
                  apply_au_thresholds(au[rows], thresholds))
    print(json.dumps({"seed": args.seed, "epochs": epochs, "train_s": round(seconds, 1),
                      "val": v.as_dict(), "test": t.as_dict(), "submission": str(sub)}))


if __name__ == "__main__":
    main()
