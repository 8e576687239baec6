"""AdaBN (``abaw.lsd.adabn``): exact target statistics, nothing else touched, a new file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from abaw.data.lsd import LsdDataModule
from abaw.errors import AbawError
from abaw.lsd.adabn import adapt_batchnorm, adapt_checkpoint, batchnorm_layers
from abaw.training.lsd_module import LsdModule
from tests.lsd_fixtures import TEST_DIR, TEST_SIZE, make_lsd_data


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1),
                         nn.BatchNorm2d(2))


def test_statistics_are_the_exact_target_moments_and_weights_stay() -> None:
    net = _net().eval()
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    torch.manual_seed(1)
    target = torch.randn(10, 3, 5, 5) * 3.0 + 2.0
    seen = adapt_batchnorm(net, [target[:3], target[3:4], target[4:]])
    assert seen == 10
    # the first BatchNorm's statistics: per channel over (N, H, W) of the conv output
    with torch.no_grad():
        first = net[0](target)
    torch.testing.assert_close(net[1].running_mean, first.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(net[1].running_var, first.var(dim=(0, 2, 3), unbiased=True))
    for key, value in weights.items():  # every weight and bias as it was
        torch.testing.assert_close(net.state_dict()[key], value, rtol=0, atol=0)
    assert not any(m.training for m in net.modules())  # evaluation mode restored throughout


def test_the_batching_does_not_change_the_first_layer_statistics() -> None:
    torch.manual_seed(2)
    target = torch.randn(12, 3, 4, 4)
    a, b = _net(), _net()
    adapt_batchnorm(a, [target])
    adapt_batchnorm(b, [target[i:i + 5] for i in range(0, 12, 5)])
    first_a, first_b = batchnorm_layers(a)[0], batchnorm_layers(b)[0]
    torch.testing.assert_close(first_a.running_mean, first_b.running_mean)
    torch.testing.assert_close(first_a.running_var, first_b.running_var)


def test_nothing_to_adapt_is_a_clear_error() -> None:
    with pytest.raises(AbawError, match="no BatchNorm layer"):
        adapt_batchnorm(nn.Sequential(nn.Conv2d(3, 2, 1)), [torch.zeros(1, 3, 2, 2)])
    with pytest.raises(AbawError, match="no target image"):
        adapt_batchnorm(_net(), [])


def test_adapted_checkpoint_is_a_new_file_from_validation_and_test_images(tmp_path: Path
                                                                          ) -> None:
    root = make_lsd_data(tmp_path / "data")
    model = LsdModule(backbone="efficientnet_test", img_size=32, lr=1e-3)
    data = LsdDataModule(data_root=str(root), test_dir=str(root / TEST_DIR), img_size=32,
                         batch_size=4, num_workers=0)
    trained = tmp_path / "best.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, trained)
    before = hashlib.sha256(trained.read_bytes()).hexdigest()
    out, seen = adapt_checkpoint(SimpleNamespace(model=model, datamodule=data), trained)
    assert out == tmp_path / "best.adabn.ckpt"
    assert hashlib.sha256(trained.read_bytes()).hexdigest() == before  # untouched
    data.predict_split = "val"
    data.setup("predict")
    assert seen == len(data.predict_dataloader().dataset) + TEST_SIZE
    old = torch.load(trained, weights_only=False)["state_dict"]
    new = torch.load(out, weights_only=False)
    assert new["epoch"] == 3
    changed = {k for k in old if not torch.equal(old[k], new["state_dict"][k])}
    assert changed and all("running_" in k or "num_batches" in k for k in changed)
