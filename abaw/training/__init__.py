"""Training: Lightning modules, the torchmetrics adapter of the official score, the LightningCLI.

- :mod:`abaw.training.base` — :class:`~abaw.training.base.ChallengeModule`, the steps, hooks
  and optimiser the challenge modules share;
- :mod:`abaw.training.optim` — AdamW, the warm-up/cosine schedule, backbone freezing;
- :mod:`abaw.training.mtl_module` — :class:`~abaw.training.mtl_module.MtlModule`;
- :mod:`abaw.training.lsd_module` — :class:`~abaw.training.lsd_module.LsdModule`;
- :mod:`abaw.training.mae_module` — :class:`~abaw.training.mae_module.MaeModule` (MAE
  pre-training; writes the encoder checkpoint and a preview per epoch);
- :mod:`abaw.training.metric` — :class:`~abaw.training.metric.MtlMetric` (official P_MTL) and
  :class:`~abaw.training.metric.LsdMetric` (official LSD macro F1);
- :mod:`abaw.training.writer` — the one prediction writer (gather, order, post-process, expand
  to the test list, write) with a subclass per challenge;
- :mod:`abaw.training.cli` — ``abaw mtl|lsd fit|validate|test|predict`` (one LightningCLI
  class per challenge), ``abaw pretrain mae`` and :func:`~abaw.training.cli.build_cli` for
  the runner.

Submodules are imported on demand (this package imports nothing heavy).
"""
