"""AU-relation graph head (after ME-GraphAU's ANFL, Luo et al., IJCAI 2022; own code).

From the shared pooled features ``(B, F)`` the head

1. builds one node feature per AU (a separate linear projection per AU → ``(B, A, node_dim)``);
2. forms a graph over the AUs per sample: a *learned* adjacency shared by all samples
   (optionally initialised from the AU co-occurrence of the training labels) plus a *dynamic*
   graph linking each AU to its ``top_k`` most similar AUs in this sample (cosine similarity
   of the node features, like ANFL's k-nearest-neighbour facial graph);
3. runs ``num_layers`` rounds of GCN-style message passing, each with a residual connection
   and LayerNorm;
4. scores each AU by the cosine similarity of its node feature with a learned per-AU class
   vector, times a learned scale, plus a per-AU bias (ANFL's similarity classifier).

Outputs are logits ``(B, A)``. Everything per AU is indexed in the order of ``vocab.AUS``;
the head is equivariant to a joint permutation of that order (tested).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from abaw.errors import AbawError, ConfigError
from abaw.vocab import AU_MISSING, NUM_AUS


def au_cooccurrence(aus: np.ndarray) -> np.ndarray:
    """Conditional co-occurrence ``C[i, j] = P(AU_j = 1 | AU_i = 1)`` from training labels.

    ``aus`` is ``(N, A)`` with 0/1 and ``AU_MISSING`` (-1). Each pair ``(i, j)`` is counted
    over the rows labelled for both AUs: ``C[i, j] = #(i=1, j=1) / #(i=1, j labelled)``; it is
    0 where AU ``i`` is never active on such rows. The diagonal is 1 for every AU that is
    active at least once. Returns ``float64`` ``(A, A)`` (not symmetric).
    """
    labels = np.asarray(aus)
    if labels.ndim != 2:
        raise AbawError(f"AU labels must be (N, num_aus), got shape {labels.shape}")
    if not np.isin(labels, (0, 1, AU_MISSING)).all():
        raise AbawError(f"AU labels must be 0, 1 or {AU_MISSING}")
    active = (labels == 1).astype(np.float64)
    labelled = (labels != AU_MISSING).astype(np.float64)
    both_active = active.T @ active  # [i, j] = rows with i=1 and j=1
    i_active_j_labelled = active.T @ labelled  # [i, j] = rows with i=1 and j labelled
    with np.errstate(divide="ignore", invalid="ignore"):
        cooc = np.where(i_active_j_labelled > 0, both_active / i_active_j_labelled, 0.0)
    return cooc


class AUGraphHead(nn.Module):
    """Per-AU nodes, learned + dynamic top-k AU graph, message passing, similarity classifier.

    Args:
        in_features: size of the shared pooled features.
        num_aus: number of AU nodes (12 in ABAW).
        node_dim: size of each AU node feature.
        top_k: neighbours per AU in the dynamic graph (0 disables it; must be < ``num_aus``).
        num_layers: message-passing rounds.
        cooccurrence: optional ``(A, A)`` matrix in [0, 1] (:func:`au_cooccurrence`) that
            initialises the learned adjacency; without it the learned graph starts uniform.
        dropout: on the shared features and inside message passing.
    """

    def __init__(
        self,
        in_features: int,
        num_aus: int = NUM_AUS,
        node_dim: int = 64,
        top_k: int = 4,
        num_layers: int = 2,
        cooccurrence: torch.Tensor | np.ndarray | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 <= top_k < num_aus:
            raise ConfigError(f"top_k must be in [0, {num_aus - 1}], got {top_k}")
        if num_layers < 0:
            raise ConfigError(f"num_layers must be >= 0, got {num_layers}")
        self.num_aus = num_aus
        self.top_k = top_k
        self.dropout = nn.Dropout(dropout)

        # One projection per AU, stored as a single (A, F, D) tensor for one einsum.
        bound = 1.0 / math.sqrt(in_features)
        self.node_weight = nn.Parameter(torch.empty(num_aus, in_features, node_dim))
        self.node_bias = nn.Parameter(torch.empty(num_aus, node_dim))
        nn.init.uniform_(self.node_weight, -bound, bound)
        nn.init.uniform_(self.node_bias, -bound, bound)
        self.node_norm = nn.LayerNorm(node_dim)

        # Learned adjacency as logits: sigmoid(logit(p)) = p reproduces the co-occurrence.
        if cooccurrence is None:
            init = torch.zeros(num_aus, num_aus)
        else:
            cooc = torch.as_tensor(np.asarray(cooccurrence), dtype=torch.float32)
            if cooc.shape != (num_aus, num_aus):
                raise ConfigError(f"cooccurrence must be {num_aus}x{num_aus}, got "
                                  f"{tuple(cooc.shape)}")
            init = torch.logit(cooc.clamp(0.01, 0.99))
        self.adjacency_logits = nn.Parameter(init)

        self.message = nn.ModuleList(nn.Linear(node_dim, node_dim) for _ in range(num_layers))
        self.update = nn.ModuleList(nn.Linear(node_dim, node_dim) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(node_dim) for _ in range(num_layers))

        self.class_vectors = nn.Parameter(torch.randn(num_aus, node_dim) / math.sqrt(node_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.class_bias = nn.Parameter(torch.zeros(num_aus))

    def node_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F) -> (B, A, node_dim)``: one projected feature per AU."""
        nodes = torch.einsum("bf,afd->bad", self.dropout(features), self.node_weight)
        return F.relu(self.node_norm(nodes + self.node_bias))

    def dynamic_graph(self, nodes: torch.Tensor) -> torch.Tensor:
        """``(B, A, A)`` 0/1: row ``i`` marks the ``top_k`` AUs most similar to AU ``i``.

        Self-similarity is excluded (each node keeps itself through the residual path and
        the self-loop of :meth:`adjacency`).
        """
        b, a, _ = nodes.shape
        if self.top_k == 0:
            return nodes.new_zeros(b, a, a)
        unit = F.normalize(nodes.detach(), dim=-1)
        sim = unit @ unit.transpose(1, 2)
        eye = torch.eye(a, dtype=torch.bool, device=nodes.device)
        sim = sim.masked_fill(eye, float("-inf"))
        idx = sim.topk(self.top_k, dim=-1).indices
        return torch.zeros_like(sim).scatter_(-1, idx, 1.0)

    def adjacency(self, nodes: torch.Tensor) -> torch.Tensor:
        """Row-normalised ``(B, A, A)``: learned graph + dynamic graph + self-loops."""
        a = self.num_aus
        learned = torch.sigmoid(self.adjacency_logits).unsqueeze(0)
        eye = torch.eye(a, dtype=nodes.dtype, device=nodes.device)
        adj = learned + self.dynamic_graph(nodes) + eye
        return adj / adj.sum(dim=-1, keepdim=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        nodes = self.node_features(features)
        adj = self.adjacency(nodes)
        for message, update, norm in zip(self.message, self.update, self.norms):
            aggregated = adj @ message(nodes)
            nodes = norm(nodes + self.dropout(F.gelu(aggregated + update(nodes))))
        sim = F.cosine_similarity(nodes, self.class_vectors.unsqueeze(0), dim=-1)
        return self.logit_scale.exp() * sim + self.class_bias
