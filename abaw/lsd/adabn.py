"""Target-domain BatchNorm statistics (AdaBN: Li et al., "Revisiting Batch Normalization For
Practical Domain Adaptation", 2016): ``make lsd ARGS='--adabn target'``.

A network trained on synthetic faces normalises every BatchNorm layer with the synthetic
images' running mean and variance; real faces have other statistics (texture, noise, colour,
blur). AdaBN keeps every learned weight and replaces only those running statistics by the
ones of the target domain's images — here the validation and test crops, read as images only
(no label is read; the test images are the unlabelled inputs any submission predicts). The
result is a second checkpoint beside the trained one, ``<best>.adabn.ckpt``, which validation,
the occlusion rule and the submission then use.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from abaw.errors import AbawError
from abaw.fileio import atomic_write_bytes

#: the adapted checkpoint's suffix, replacing ``.ckpt``
SUFFIX = ".adabn.ckpt"


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer (1-D, 2-D, 3-D, synchronised) of ``module``."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_batchnorm(module: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running statistics of every BatchNorm layer of ``module`` by the mean and
    unbiased variance of that layer's input over all images of ``batches``; every other
    parameter and buffer is left as it was. Returns the number of images seen.

    The network runs in training-mode normalisation (each batch normalised by its own
    statistics, as while training), and each layer's input is summed over every image in
    float64, so the first layer's statistics are the exact moments of the target images'
    features whatever the batching (later layers see inputs normalised per batch).
    """
    layers = batchnorm_layers(module)
    if not layers:
        raise AbawError("AdaBN: the network has no BatchNorm layer to adapt")
    sums: dict[int, list] = {i: [0.0, 0.0, 0] for i in range(len(layers))}

    def hook(index: int):
        def record(_layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().double().transpose(0, 1).reshape(inputs[0].shape[1], -1)
            total = sums[index]
            total[0] = total[0] + x.sum(dim=1)
            total[1] = total[1] + (x * x).sum(dim=1)
            total[2] += x.shape[1]
        return record

    was_training = module.training
    handles = [layer.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    module.eval()
    for layer in layers:
        layer.train()
    seen = 0
    try:
        for images in batches:
            module(images)
            seen += len(images)
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    if not seen:
        raise AbawError("AdaBN: no target image to compute statistics from")
    for i, layer in enumerate(layers):
        total, squares, count = sums[i]
        mean = total / count
        var = (squares - count * mean * mean) / max(1, count - 1)
        layer.running_mean.copy_(mean.to(layer.running_mean.dtype))
        layer.running_var.copy_(var.clamp_min(0).to(layer.running_var.dtype))
    return seen


def adapt_checkpoint(cli: Any, checkpoint: Path, splits: tuple[str, ...] = ("val", "test")
                     ) -> tuple[Path, int]:
    """``checkpoint`` with its BatchNorm statistics recomputed over the images of ``splits``
    (the datamodule's predict inputs, evaluation transforms), written beside it as
    ``<name>.adabn.ckpt``; returns that path and the number of images seen."""
    model, data = cli.model, cli.datamodule
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    model.cpu()

    def images() -> Iterable[torch.Tensor]:
        for split in splits:
            data.predict_split = split
            data.setup("predict")
            for batch in data.predict_dataloader():
                if batch is not None:  # a batch of unreadable images only
                    yield batch["image"]

    seen = adapt_batchnorm(model, images())
    state["state_dict"] = model.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    out = checkpoint.with_name(checkpoint.name.removesuffix(".ckpt") + SUFFIX)
    return atomic_write_bytes(out, buffer.getvalue()), seen


__all__ = ["SUFFIX", "adapt_batchnorm", "adapt_checkpoint", "batchnorm_layers"]
