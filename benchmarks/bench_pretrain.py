"""MAE pre-training speed: images per second of one optimiser step (forward on the visible
patches, decoder, normalised-pixel loss, backward, AdamW), the cost ``make pretrain`` pays per
image.

- **default**: ``configs/pretrain/default.yaml``'s network (``vit_tiny_mae`` encoder, 128-wide
  2-block decoder, 64 px) on the CPU with the process's torch threads, side by side (rounds
  alternated) with the reference: a training step of ``make mtl``'s default backbone
  (ResNet-18, 64 px, a linear head, same batch), whose images/s the README states for a
  whole ``make mtl`` run, so the ratio turns into a ``make pretrain`` time even on a busy
  machine;
- **gpu** (only where CUDA is available): ``configs/pretrain/gpu.yaml``'s ``vit_base_mae``
  with the paper's decoder at 112 px, batch 256, bf16 autocast.

Inputs are random normalised images (the loader is benchmarked by ``bench_loader``); the
first steps are warm-up and not timed. ``python -m benchmarks.bench_pretrain`` prints the
same table alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from benchmarks import Measurement, time_side_by_side

DEFAULT = {"backbone": "vit_tiny_mae", "img_size": 64, "decoder_embed_dim": 128,
           "decoder_depth": 2, "decoder_num_heads": 4}
GPU = {"backbone": "vit_base_mae", "img_size": 112, "decoder_embed_dim": 512,
       "decoder_depth": 8, "decoder_num_heads": 16}


def _step(net: torch.nn.Module, loss_of: Callable[[], torch.Tensor],
          device: str = "cpu") -> Callable[[], None]:
    """One optimiser step (forward, backward, AdamW) as a function to time."""
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def mae_step(settings: dict, batch: int, device: str = "cpu") -> Callable[[], None]:
    """A training step of :class:`MaskedAutoencoder` (``settings``) on random images."""
    from abaw.models.mae import MaskedAutoencoder

    torch.manual_seed(0)
    net = MaskedAutoencoder(**settings).to(device)
    size = settings["img_size"]
    images = torch.randn(batch, 3, size, size, device=device)
    return _step(net, lambda: net(images)[0], device)


def resnet_step(batch: int, size: int = 64) -> Callable[[], None]:
    """A training step of make mtl's backbone (ResNet-18) with a linear head, MSE loss."""
    from abaw.models import create_backbone

    torch.manual_seed(0)
    backbone = create_backbone("resnet18", img_size=size)
    net = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.num_features, 22))
    images, target = torch.randn(batch, 3, size, size), torch.randn(batch, 22)
    return _step(net, lambda: torch.nn.functional.mse_loss(net(images), target))


def run(quick: bool = False) -> list[Measurement]:
    batch, repeats = (32, 2) if quick else (64, 5)
    threads = torch.get_num_threads()
    steps = [mae_step(DEFAULT, batch), resnet_step(batch)]
    for step in steps:  # warm-up, not timed
        step()
    (mae, resnet), _ = time_side_by_side(steps, repeats)
    rows = [Measurement(
        f"MAE step, vit_tiny_mae 64 px, batch {batch}, CPU {threads} thread(s)", mae,
        reference="make mtl's ResNet-18 step", reference_seconds=resnet,
        note=f"{batch / mae:.0f} img/s vs {batch / resnet:.0f} img/s")]
    if torch.cuda.is_available():
        gpu_batch = 64 if quick else 256
        step = mae_step(GPU, gpu_batch, "cuda")
        step()
        (seconds,), _ = time_side_by_side([step], repeats)
        rows.append(Measurement(
            f"MAE step, vit_base_mae 112 px, batch {gpu_batch}, {torch.cuda.get_device_name()}"
            ", bf16", seconds, note=f"{gpu_batch / seconds:.0f} img/s"))
    return rows


if __name__ == "__main__":
    from benchmarks.run import format_table

    print(format_table([("pretrain", m) for m in run()]))
