"""The Darknet parser: cfg parsing and patching, the keep-edge maxpool, the weights reader, and parity
with cv2.dnn on a real frame (when the Darknet files are present)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import torch

from detector.backbones import build_backbone
from detector.darknet import (
    YOLOV3_TINY_CFG,
    DarknetError,
    DarknetTrunk,
    MaxPoolKeepEdge,
    parse_cfg,
    patch_yolov3_tiny_cfg,
    read_darknet_weights,
)
from tests.detector.darknet_files import darknet_dir, needs_darknet


def test_parse_cfg_sections_and_options():
    sections = parse_cfg(YOLOV3_TINY_CFG)
    assert sections[0].kind == "net"
    kinds = [s.kind for s in sections[1:]]
    assert kinds.count("convolutional") == 13 and kinds.count("yolo") == 2 and kinds.count("maxpool") == 6
    assert sections[1].int("filters") == 16


def test_parse_cfg_errors_name_the_line():
    with pytest.raises(DarknetError, match="starts with"):
        parse_cfg("[convolutional]\nfilters=1\n")
    with pytest.raises(DarknetError, match="line 2"):
        parse_cfg("[net]\nnonsense\n")


def test_patch_fixes_only_the_second_yolo_mask():
    buggy = YOLOV3_TINY_CFG.replace("mask = 1,2,3", "mask = 0,1,2")
    assert buggy != YOLOV3_TINY_CFG
    patched = patch_yolov3_tiny_cfg(buggy)
    masks = [s.options["mask"].replace(" ", "") for s in parse_cfg(patched) if s.kind == "yolo"]
    assert masks == ["3,4,5", "1,2,3"]
    assert patch_yolov3_tiny_cfg(YOLOV3_TINY_CFG) == YOLOV3_TINY_CFG


def test_stride1_maxpool_keeps_the_edge_value():
    x = -torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3) - 1.0  # all negative: zero padding would win
    y = MaxPoolKeepEdge(2, 1)(x)
    assert y.shape == x.shape
    assert torch.equal(y[0, 0, -1, -1], x[0, 0, -1, -1])  # bottom-right: only itself in the window
    assert (y < 0).all()


def test_trunk_shapes_and_backbone_contract():
    body = build_backbone("yolov3_tiny", reduce_channels=64)
    x = torch.rand(1, 3, 128, 160)
    maps = body.trunk_features(x)
    assert [tuple(m.shape) for m in maps] == [(1, 256, 8, 10), (1, 512, 4, 5)]
    out = body(x)
    assert list(out) == ["0", "1"] and all(v.shape[1] == 64 for v in out.values())
    assert body.strides == (16, 32) and body.out_channels == 64
    assert not any(p.requires_grad for p in body.trunk.parameters())
    assert all(p.requires_grad for p in body.reduce.parameters())
    # the YOLO output convs are not part of the trunk
    assert "15" not in body.trunk.layers and "22" not in body.trunk.layers


def test_a_trunk_split_for_training_its_last_layers_computes_the_same_maps():
    """train_from=13: the frozen part returns the maps layers 13–21 read (layer 8's at stride 16,
    layer 12's at stride 32), the neck runs those layers, and the result is the whole trunk's exactly;
    only the layers from 13 on (and the reductions) get gradients."""
    from detector.darknet import DarknetError

    torch.manual_seed(0)
    split = build_backbone("yolov3_tiny", reduce_channels=32, train_from=13).eval()
    whole = build_backbone("yolov3_tiny", reduce_channels=32).eval()
    whole.load_state_dict(split.state_dict())
    assert split.trunk.boundary(13) == (8, 12)
    x = torch.rand(1, 3, 128, 160)
    maps = split.trunk_features(x)
    assert [tuple(m.shape[1:]) for m in maps] == [(256, 8, 10), (1024, 4, 5)]
    with torch.no_grad():
        a, b = split(x), whole(x)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    trained = {name.split(".")[2] for name, p in split.named_parameters() if p.requires_grad and name.startswith("trunk")}
    assert trained == {"13", "14", "18", "21"}
    assert not any(p.requires_grad for p in whole.trunk.parameters())
    with pytest.raises(DarknetError, match="layer 16 does not split"):
        build_backbone("yolov3_tiny", reduce_channels=32, train_from=16)


def test_weights_file_of_the_wrong_size_is_refused(tmp_path):
    trunk = DarknetTrunk(YOLOV3_TINY_CFG, (14,))
    bad = tmp_path / "short.weights"
    bad.write_bytes(struct.pack("<iiiq", 0, 2, 0, 0) + np.zeros(100, np.float32).tobytes())
    with pytest.raises(DarknetError, match="100 float32 values"):
        read_darknet_weights(bad, trunk)


def test_weights_reader_folds_batch_norm(tmp_path):
    """A one-layer cfg with known numbers: the folded conv must equal conv → BN by hand."""
    cfg = "[net]\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=2\nsize=1\nstride=1\npad=1\nactivation=linear\n"
    rng = np.random.default_rng(0)
    bias, scale, mean = rng.normal(size=(3, 2)).astype(np.float32)
    var = rng.uniform(0.5, 2, size=2).astype(np.float32)
    weight = rng.normal(size=(2, 3, 1, 1)).astype(np.float32)
    f = tmp_path / "one.weights"
    f.write_bytes(struct.pack("<iiiq", 0, 2, 0, 7) + np.concatenate([bias, scale, mean, var, weight.ravel()]).tobytes())
    trunk = DarknetTrunk(cfg, (0,))
    header = read_darknet_weights(f, trunk)
    assert header["seen"] == 7
    x = torch.rand(1, 3, 4, 4)
    conv = torch.nn.functional.conv2d(x, torch.from_numpy(weight))
    expected = (conv - torch.from_numpy(mean).view(1, 2, 1, 1)) / torch.sqrt(torch.from_numpy(var).view(1, 2, 1, 1) + 1e-6)
    expected = expected * torch.from_numpy(scale).view(1, 2, 1, 1) + torch.from_numpy(bias).view(1, 2, 1, 1)
    torch.testing.assert_close(trunk(x)[0], expected, atol=1e-5, rtol=1e-5)


def _cv2_layer_name(index: int, kind: str, sources: tuple[int, ...]) -> str:
    """cv2.dnn's names of Darknet layers (a conv's output is its activation, named one index up)."""
    return {"convolutional": f"leaky_{index + 1}", "maxpool": f"pool_{index}", "upsample": f"upsample_{index}",
            "route": f"identity_{index}" if len(sources) == 1 else f"concat_{index}"}[kind]


@needs_darknet
def test_trunk_reproduces_cv2_dnn_on_a_real_frame(tmp_path, sample_frames):
    files = darknet_dir()
    cfg_text = patch_yolov3_tiny_cfg((files / "yolov3-tiny.cfg").read_text())
    (tmp_path / "y.cfg").write_text(cfg_text)
    net = cv2.dnn.readNetFromDarknet(str(tmp_path / "y.cfg"), str(files / "yolov3-tiny.weights"))
    blob = cv2.dnn.blobFromImage(sample_frames[0], 1 / 255.0, (416, 416), swapRB=False, crop=False)  # RGB already
    trunk = DarknetTrunk(cfg_text, (21, 14))
    read_darknet_weights(files / "yolov3-tiny.weights", trunk)
    with torch.no_grad():
        ours = trunk.forward_all(torch.from_numpy(blob))
    names = {i: _cv2_layer_name(i, trunk.infos[i].kind, trunk.infos[i].sources) for i in sorted(ours)}
    net.setInput(blob)
    theirs = dict(zip(names, net.forward(list(names.values())), strict=True))
    for i, ref in theirs.items():
        diff = float(np.abs(ours[i].numpy() - ref).max())
        assert diff < 2e-3, f"layer {i} ({names[i]}): max abs difference {diff} to cv2.dnn"
