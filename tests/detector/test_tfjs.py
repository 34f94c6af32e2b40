"""The TF.js graph executor: small hand-made graphs checked against plain numpy, the weights reader, the
errors, and the two real graphs against TF.js's own outputs (the fixture made by
scripts/make_tfjs_fixture.py) when ``make teacher`` has fetched them."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from detector.tfjs import GraphModel, TfjsError
from tests.detector.tfjs_files import needs_tfjs, reference, tfjs_dir


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(*values: int) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def write_graph(folder, nodes: list[dict], weights: dict[str, np.ndarray], quantize: dict[str, str] | None = None,
                outputs: tuple[str, ...] = ("out",)):
    """A model.json + group1-shard1of1.bin with ``weights`` as Const nodes (float16 / uint8 where asked)."""
    specs, blobs = [], []
    for name, value in weights.items():
        value = np.asarray(value)
        spec = {"name": name, "shape": list(value.shape), "dtype": "int32" if value.dtype.kind == "i" else "float32"}
        q = (quantize or {}).get(name)
        if q == "float16":
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            blobs.append(value.astype("<f2").tobytes())
        elif q == "uint8":
            lo, hi = float(value.min()), float(value.max())
            scale = (hi - lo) / 255
            spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo, "original_dtype": "float32"}
            blobs.append(np.round((value - lo) / scale).astype(np.uint8).tobytes())
        else:
            blobs.append(value.astype("<i4" if spec["dtype"] == "int32" else "<f4").tobytes())
        specs.append(spec)
    consts = [{"name": n, "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}} for n in weights]
    model = {"format": "graph-model", "generatedBy": "test", "convertedBy": "test",
             "modelTopology": {"node": [{"name": "x", "op": "Placeholder"}, *consts, *nodes]},
             "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": specs}],
             "signature": {"inputs": {"x:0": {}}, "outputs": {f"{o}:0": {} for o in outputs}}}
    (folder / "model.json").write_text(json.dumps(model))
    (folder / "group1-shard1of1.bin").write_bytes(b"".join(blobs))
    return folder / "model.json"


def conv_nhwc(x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Plain-loop NHWC convolution: x [1, H, W, C], w [kh, kw, C, O], pads (top, bottom, left, right)."""
    top, bottom, left, right = pads
    xp = np.pad(x[0], ((top, bottom), (left, right), (0, 0)))
    kh, kw, _, o = w.shape
    oh, ow = (xp.shape[0] - kh) // stride + 1, (xp.shape[1] - kw) // stride + 1
    out = np.zeros((oh, ow, o), np.float64)
    for i in range(oh):
        for j in range(ow):
            window = xp[i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[i, j] = np.tensordot(window, w, axes=([0, 1, 2], [0, 1, 2]))
    return out[None]


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_fused_conv_same_padding_puts_the_odd_pixel_after(tmp_path, data_format):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    w = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)
    b = np.array([0.5, -0.5, 7.0], np.float32)
    strides = _ints(1, 2, 2, 1) if data_format == "NHWC" else _ints(1, 1, 2, 2)
    node = {"name": "out", "op": "_FusedConv2D", "input": ["x", "w", "b"],
            "attr": {"strides": strides, "padding": _s("SAME"), "data_format": _s(data_format),
                     "dilations": _ints(1, 1, 1, 1), "fused_ops": {"list": {"s": [_s("BiasAdd")["s"], _s("Relu6")["s"]]}},
                     "num_args": {"i": "1"}}}
    graph = GraphModel.load(write_graph(tmp_path, [node], {"w": w, "b": b}))
    feed = torch.from_numpy(x) if data_format == "NHWC" else torch.from_numpy(x).permute(0, 3, 1, 2)
    got = graph.run({"x": feed})["out:0"]
    got = (got if data_format == "NHWC" else got.permute(0, 2, 3, 1)).numpy()
    # TF: 4 px, k 3, stride 2 → 2 outputs, total padding 1, all of it after (bottom/right)
    expected = np.clip(conv_nhwc(x, w, 2, (0, 1, 0, 1)) + b, 0, 6)
    assert got.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, np.clip(conv_nhwc(x, w, 2, (1, 0, 1, 0)) + b, 0, 6), atol=1e-3)


def test_depthwise_multiplier_and_grouped_conv(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
    dw = rng.normal(size=(3, 3, 2, 2)).astype(np.float32)  # channel multiplier 2
    grouped = rng.normal(size=(1, 1, 2, 4)).astype(np.float32)  # 4 input channels / 2 per filter → 2 groups
    nodes = [
        {"name": "dw", "op": "DepthwiseConv2dNative", "input": ["x", "k"],
         "attr": {"strides": _ints(1, 1, 1, 1), "padding": _s("VALID"), "data_format": _s("NHWC")}},
        {"name": "out", "op": "Conv2D", "input": ["dw", "g"],
         "attr": {"strides": _ints(1, 1, 1, 1), "padding": _s("VALID"), "data_format": _s("NHWC")}},
    ]
    graph = GraphModel.load(write_graph(tmp_path, nodes, {"k": dw, "g": grouped}))
    out = graph.run({"x": torch.from_numpy(x)}, ["dw", "out"])
    # TF orders depthwise outputs channel-major: output c·M + m = input channel c, filter m
    expected_dw = np.concatenate([conv_nhwc(x[..., c:c + 1], dw[:, :, c:c + 1, m:m + 1], 1, (0, 0, 0, 0))
                                  for c in range(2) for m in range(2)], -1)
    np.testing.assert_allclose(out["dw"].numpy(), expected_dw, atol=1e-5)
    d = expected_dw
    expected = np.concatenate([conv_nhwc(d[..., :2], grouped[..., :2], 1, (0,) * 4),
                               conv_nhwc(d[..., 2:], grouped[..., 2:], 1, (0,) * 4)], -1)
    np.testing.assert_allclose(out["out"].numpy(), expected, atol=1e-5)


def test_max_pool_padding_never_wins(tmp_path):
    node = {"name": "out", "op": "MaxPool", "input": ["x"],
            "attr": {"ksize": _ints(1, 3, 3, 1), "strides": _ints(1, 1, 1, 1), "padding": _s("SAME"),
                     "data_format": _s("NHWC")}}
    graph = GraphModel.load(write_graph(tmp_path, [node], {}))
    x = -1.0 - torch.arange(9, dtype=torch.float32).view(1, 3, 3, 1)
    got = graph.run({"x": x})["out:0"][0, :, :, 0]
    assert torch.equal(got, torch.tensor([[-1.0, -1.0, -2.0], [-1.0, -1.0, -2.0], [-4.0, -4.0, -5.0]]))


@pytest.mark.parametrize(("align", "half", "expected"), [
    (False, False, [0.0, 0.5, 1.0, 1.0]),  # TF's legacy mode: source = x · in/out
    (False, True, [0.0, 0.25, 0.75, 1.0]),  # half-pixel centres
    (True, False, [0.0, 1 / 3, 2 / 3, 1.0]),
])
def test_resize_bilinear_modes(tmp_path, align, half, expected):
    node = {"name": "out", "op": "ResizeBilinear", "input": ["x", "size"],
            "attr": {"align_corners": {"b": align}, "half_pixel_centers": {"b": half}}}
    graph = GraphModel.load(write_graph(tmp_path, [node], {"size": np.array([1, 4], np.int32)}))
    got = graph.run({"x": torch.tensor([0.0, 1.0]).view(1, 1, 2, 1)})["out:0"].reshape(-1)
    torch.testing.assert_close(got, torch.tensor(expected))


def test_centernet_style_index_ops(tmp_path):
    """TopKV2 → FloorDiv / FloorMod → GatherV2 → StridedSlice, as CenterNet decodes its heat map."""
    nodes = [
        {"name": "topk", "op": "TopKV2", "input": ["x", "k"], "attr": {"sorted": {"b": True}}},
        {"name": "col", "op": "FloorMod", "input": ["topk:1", "width"]},
        {"name": "row", "op": "FloorDiv", "input": ["topk:1", "width"]},
        {"name": "picked", "op": "GatherV2", "input": ["table", "row", "axis"], "attr": {"batch_dims": {"i": "0"}}},
        {"name": "out", "op": "StridedSlice", "input": ["picked", "b", "e", "s"],
         "attr": {"begin_mask": {"i": "1"}, "end_mask": {"i": "0"}, "shrink_axis_mask": {"i": "2"}}},
    ]
    weights = {"k": np.array(2, np.int32), "width": np.array(3, np.int32), "axis": np.array(0, np.int32),
               "table": np.array([[10, 11], [20, 21], [30, 31]], np.float32),
               "b": np.array([0, 1], np.int32), "e": np.array([1, 2], np.int32), "s": np.array([1, 1], np.int32)}
    graph = GraphModel.load(write_graph(tmp_path, nodes, weights))
    out = graph.run({"x": torch.tensor([0.1, 0.9, 0.2, 0.3, 0.8, 0.0])}, ["topk:0", "col", "row", "picked", "out"])
    assert out["topk:0"].tolist() == pytest.approx([0.9, 0.8])
    assert out["col"].tolist() == [1, 1] and out["row"].tolist() == [0, 1]
    assert out["picked"].tolist() == [[10, 11], [20, 21]]
    assert out["out"].tolist() == [11.0]  # rows [:1], column 1 shrunk away


def test_quantized_weights_are_dequantized(tmp_path):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 4)).astype(np.float32), rng.uniform(-2, 5, size=(4,)).astype(np.float32)
    nodes = [{"name": "out", "op": "Add", "input": ["a", "b"]}]
    graph = GraphModel.load(write_graph(tmp_path, nodes, {"a": a, "b": b}, quantize={"a": "float16", "b": "uint8"}))
    np.testing.assert_allclose(graph.weights["a"].numpy(), a.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(graph.weights["b"].numpy(), b, atol=(b.max() - b.min()) / 255 / 2 + 1e-6)
    assert graph.weights["a"].dtype == torch.float32


def test_unsupported_op_and_bad_files_are_named(tmp_path):
    graph = GraphModel.load(write_graph(tmp_path, [{"name": "out", "op": "Erf", "input": ["x"]}], {}))
    with pytest.raises(TfjsError, match="op Erf \\(node out\\) is not supported"):
        graph.run({"x": torch.zeros(2)})
    path = write_graph(tmp_path, [{"name": "out", "op": "Add", "input": ["x", "c"]}], {"c": np.zeros(3, np.float32)})
    (tmp_path / "group1-shard1of1.bin").write_bytes(np.zeros(4, np.float32).tobytes())  # one float too many
    with pytest.raises(TfjsError, match="16 bytes"):
        GraphModel.load(path)
    (tmp_path / "group1-shard1of1.bin").unlink()
    with pytest.raises(TfjsError, match="group1-shard1of1.bin"):
        GraphModel.load(path)
    with pytest.raises(TfjsError, match="does not exist"):
        GraphModel.load(tmp_path / "missing.json")


@needs_tfjs
def test_executor_reproduces_tfjs_on_the_sample_frame(sample_frames):
    """Raw outputs of both real graphs against TF.js's (CPU backend) on the same input."""
    from detector.tfjs_teachers import CenterNetTeacher, NanoDetTeacher

    ref = reference()
    nanodet = NanoDetTeacher.from_directory(tfjs_dir())
    graph = GraphModel.load(tfjs_dir() / "nanodet.json")
    x, *_ = nanodet.preprocess(sample_frames[0], 416)
    names = [k.split("/", 1)[1] for k in ref if k.startswith("nanodet/") and not k.endswith(("/cells", "/detections"))]
    out = {k: v.numpy() for k, v in graph.run({"input_1": x.flip(1)}, names).items()}  # the stem reads BGR
    assert len(names) == 9  # 6 outputs and the 3 PAN maps
    # the fixture keeps, per level, the 20 cells with the best class score (same cells for the bins)
    score_output = {v.shape[1]: k for k, v in out.items() if v.ndim == 3 and v.shape[-1] == 80}
    for name, ours in out.items():
        ours = ours[0, ref[f"nanodet/{score_output[ours.shape[1]]}/cells"]] if ours.ndim == 3 else ours[0, :16, :8, :8]
        np.testing.assert_allclose(ours, ref[f"nanodet/{name}"], atol=1e-4, err_msg=name)

    centernet = CenterNetTeacher.from_directory(tfjs_dir())
    x, *_ = centernet.preprocess(sample_frames[0])
    out = centernet.graph.run({"tower_0/images": x})
    np.testing.assert_allclose(out["tower_0/detections"][0].numpy(), ref["centernet/tower_0/detections"], atol=1e-2)
    for name in ("tower_0/keypoints", "tower_0/wh"):
        np.testing.assert_allclose(out[name][0, 40:48, 40:48].numpy(), ref[f"centernet/{name}"], atol=1e-2, rtol=1e-4)
