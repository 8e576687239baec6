"""Model components for the ABAW toolkit: plain ``nn.Module`` parts, no Lightning.

- :mod:`abaw.models.backbones` — one registry of shared backbones over timm, local checkpoint
  loading (MAE, timm, Lightning formats) and layer-wise LR decay parameter groups;
- :mod:`abaw.models.heads` — valence/arousal, expression and AU heads;
- :mod:`abaw.models.au_graph` — the AU-relation graph head and AU co-occurrence statistics;
- :mod:`abaw.models.losses` — task losses that skip missing labels;
- :mod:`abaw.models.weighting` — uncertainty and fixed task weighting;
- :mod:`abaw.models.multitask` — :class:`MultiTaskNet`, the backbone plus one head per task (MTL);
- :mod:`abaw.models.lsd_net` — :class:`LsdNet`, the backbone plus the LSD expression and
  occlusion heads.
"""

from __future__ import annotations

from abaw.models.au_graph import AUGraphHead, au_cooccurrence
from abaw.models.backbones import (
    Backbone,
    LoadReport,
    create_backbone,
    list_backbones,
    load_backbone_checkpoint,
    param_groups_layer_decay,
    register_backbone,
)
from abaw.models.heads import AULinearHead, ExpressionHead, VAHead
from abaw.models.losses import (
    au_loss,
    au_pos_weight,
    ccc_loss,
    expression_class_weights,
    expression_loss,
    occlusion_loss,
)
from abaw.models.lsd_net import LsdNet
from abaw.models.multitask import MTL_TASKS, MultiTaskNet, build_model
from abaw.models.weighting import FixedWeighting, UncertaintyWeighting

__all__ = [
    "AUGraphHead",
    "AULinearHead",
    "Backbone",
    "ExpressionHead",
    "FixedWeighting",
    "LoadReport",
    "LsdNet",
    "MTL_TASKS",
    "MultiTaskNet",
    "UncertaintyWeighting",
    "VAHead",
    "au_cooccurrence",
    "au_loss",
    "au_pos_weight",
    "build_model",
    "ccc_loss",
    "create_backbone",
    "expression_class_weights",
    "expression_loss",
    "list_backbones",
    "load_backbone_checkpoint",
    "occlusion_loss",
    "param_groups_layer_decay",
    "register_backbone",
]
