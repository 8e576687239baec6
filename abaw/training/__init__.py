"""Training: Lightning modules, the torchmetrics adapter of the official score, the LightningCLI.

- :mod:`abaw.training.base` — :class:`~abaw.training.base.ChallengeModule`, the steps, hooks
  and optimiser the challenge modules share;
- :mod:`abaw.training.optim` — AdamW, the warm-up/cosine schedule, backbone freezing;
- :mod:`abaw.training.mtl_module` — :class:`~abaw.training.mtl_module.MtlModule`;
- :mod:`abaw.training.lsd_module` — :class:`~abaw.training.lsd_module.LsdModule`;
- :mod:`abaw.training.metric` — :class:`~abaw.training.metric.MtlMetric` (official P_MTL);
- :mod:`abaw.training.callbacks` — the submission writer used by ``abaw predict``;
- :mod:`abaw.training.cli` — ``abaw fit|validate|test|predict`` (LightningCLI; LSD configs
  go on to :mod:`abaw.training.lsd_cli`).

Submodules are imported on demand (this package imports nothing heavy).
"""
