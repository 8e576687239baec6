"""Heads, the AU-relation graph head, AU co-occurrence and the multi-task network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abaw.errors import AbawError, ConfigError
from abaw.models import (
    AUGraphHead,
    AULinearHead,
    ExpressionHead,
    MultiTaskNet,
    VAHead,
    au_cooccurrence,
    build_model,
    create_backbone,
)
from abaw.vocab import NUM_AUS

torch.set_num_threads(1)


def test_heads_shapes_and_va_bounds() -> None:
    torch.manual_seed(0)
    features = 100.0 * torch.randn(2, 16)  # large inputs: tanh must still bound VA
    va = VAHead(16, hidden=8)(features)
    assert va.shape == (2, 2) and va.abs().max() <= 1.0
    assert ExpressionHead(16)(features).shape == (2, 8)
    assert AULinearHead(16)(features).shape == (2, 12)


def test_au_cooccurrence_by_hand() -> None:
    aus = np.array([
        [1, 1, 0, 0],
        [1, 0, -1, 0],
        [0, 1, 1, 0],
        [1, 1, 1, 0],
        [-1, 1, 0, 0],
    ])
    expected = np.array([
        [1, 2 / 3, 1 / 2, 0],  # AU0 active in rows 0,1,3; AU2 unlabelled in row 1
        [2 / 3, 1, 2 / 4, 0],  # AU1 active in rows 0,2,3,4; AU0 unlabelled in row 4
        [1 / 2, 1, 1, 0],  # AU2 active in rows 2,3
        [0, 0, 0, 0],  # AU3 never active
    ])
    np.testing.assert_allclose(au_cooccurrence(aus), expected)
    with pytest.raises(AbawError):
        au_cooccurrence(np.array([[0, 2]]))


def _graph(**kw) -> AUGraphHead:
    torch.manual_seed(0)
    return AUGraphHead(16, node_dim=8, **{"dropout": 0.0, **kw})


def test_graph_head_shapes_and_gradient_reaches_every_parameter() -> None:
    head = _graph(top_k=3, num_layers=2)
    logits = head(torch.randn(2, 16))
    assert logits.shape == (2, NUM_AUS)
    target = torch.randint(0, 2, (2, NUM_AUS)).float()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_dynamic_graph_links_each_au_to_its_top_k_most_similar() -> None:
    head = _graph(top_k=2)
    # 12 nodes on a circle: the 2 most similar to node i are i-1 and i+1 (mod 12)
    angles = torch.arange(NUM_AUS) * (2 * torch.pi / NUM_AUS)
    nodes = torch.zeros(1, NUM_AUS, 8)
    nodes[0, :, 0], nodes[0, :, 1] = torch.cos(angles), torch.sin(angles)
    graph = head.dynamic_graph(nodes)[0]
    assert torch.equal(graph.sum(dim=1), torch.full((NUM_AUS,), 2.0))
    assert graph.diagonal().sum() == 0
    for i in range(NUM_AUS):
        assert set(graph[i].nonzero().flatten().tolist()) == {(i - 1) % 12, (i + 1) % 12}
    adjacency = head.adjacency(nodes)
    torch.testing.assert_close(adjacency.sum(dim=-1), torch.ones(1, NUM_AUS))


def test_graph_head_cooccurrence_initialises_the_learned_adjacency() -> None:
    cooc = np.random.default_rng(0).uniform(0.05, 0.95, (NUM_AUS, NUM_AUS))
    head = _graph(cooccurrence=cooc)
    torch.testing.assert_close(torch.sigmoid(head.adjacency_logits.detach()),
                               torch.as_tensor(cooc, dtype=torch.float32))
    with pytest.raises(ConfigError):
        _graph(cooccurrence=np.zeros((3, 3)))
    with pytest.raises(ConfigError):
        _graph(top_k=NUM_AUS)


def test_graph_head_is_equivariant_to_permuting_the_aus() -> None:
    head = _graph(top_k=3, num_layers=2).eval()
    with torch.no_grad():  # a non-trivial learned graph
        head.adjacency_logits.normal_()
    perm = torch.randperm(NUM_AUS, generator=torch.Generator().manual_seed(1))
    permuted = _graph(top_k=3, num_layers=2).eval()
    permuted.load_state_dict(head.state_dict())
    with torch.no_grad():
        permuted.node_weight.copy_(head.node_weight[perm])
        permuted.node_bias.copy_(head.node_bias[perm])
        permuted.adjacency_logits.copy_(head.adjacency_logits[perm][:, perm])
        permuted.class_vectors.copy_(head.class_vectors[perm])
        permuted.class_bias.copy_(head.class_bias[perm])
    features = torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(permuted(features), head(features)[:, perm])


def test_multitask_net_outputs_and_options() -> None:
    torch.manual_seed(0)
    backbone = create_backbone("vit_test", img_size=64)
    x = torch.randn(2, 3, 64, 64)
    out = MultiTaskNet(backbone)(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "va": (2, 2), "expr": (2, 8), "au": (2, 12)}
    single = MultiTaskNet(backbone, tasks=["expr"])
    assert list(single(x)) == ["expr"]
    graph = MultiTaskNet(backbone, tasks=["au"], au_head="graph",
                         au_graph={"node_dim": 16, "top_k": 2},
                         cooccurrence=np.full((12, 12), 0.5))
    assert isinstance(graph.heads["au"], AUGraphHead) and graph(x)["au"].shape == (2, 12)
    with pytest.raises(ConfigError):
        MultiTaskNet(backbone, tasks=["lsd"])
    with pytest.raises(ConfigError):
        MultiTaskNet(backbone, au_head="graph", au_graph={"k": 3})
    with pytest.raises(ConfigError):
        MultiTaskNet(backbone, au_head="transformer")


def test_build_model() -> None:
    model = build_model("efficientnet_test", img_size=64, tasks=("va", "au"), au_head="graph")
    out = model(torch.randn(2, 3, 64, 64))
    assert set(out) == {"va", "au"} and model.backbone.family == "efficientnet"
