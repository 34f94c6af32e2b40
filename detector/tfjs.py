"""Run a TensorFlow.js graph model (``model.json`` + weight shards) in PyTorch, node by node.

The two teachers that ship as TF.js graph models (NanoDet, CenterNet; see ``detector.tfjs_teachers``)
need no TensorFlow: ``GraphModel.load`` reads the topology and the weights, and ``GraphModel.run``
executes the nodes that the requested outputs depend on, in topological order, with torch ops.

Conventions (TensorFlow's, reproduced and checked against TF.js itself, see
``scripts/tfjs_reference.mjs``):

* tensors keep TensorFlow's layout: a ``data_format="NHWC"`` convolution takes and returns
  ``[B, H, W, C]``; it is run as a torch convolution on a permuted view (which torch treats as
  channels-last memory, so no copy is made);
* filters are ``[H, W, C_in, C_out]`` (``Conv2D``; fewer input channels than the tensor means a grouped
  convolution) or ``[H, W, C, multiplier]`` (depthwise);
* padding ``VALID``, ``SAME`` (the extra pixel of an odd total goes after, as TensorFlow does) or
  ``EXPLICIT`` (``explicit_paddings``); strides and dilations per dimension;
* the converter's fused ops (``_FusedConv2D``, ``FusedDepthwiseConv2dNative``) apply their
  ``fused_ops`` in order: ``BiasAdd`` / ``FusedBatchNorm`` on the extra inputs, then one activation;
* integers are int64 in torch (the TF.js converter stores TensorFlow's int64 constants as int32);
* weights quantized by the converter (``float16``, or affine ``uint8`` / ``uint16`` with scale and
  min) are dequantized to their original dtype when loaded.

An op outside ``OPS`` raises ``TfjsError`` naming the op and the node.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


class TfjsError(ValueError):
    """A TF.js model file is missing, malformed or uses an op this executor does not run."""


# TensorFlow DataType enum names → torch dtypes (TF.js stores int64 as int32; torch computes in int64).
DTYPES = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int64, "DT_INT64": torch.int64, "DT_BOOL": torch.bool,
          "DT_HALF": torch.float32}
MANIFEST_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANTIZED = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


@dataclass(frozen=True)
class Node:
    """One node of the graph: its op, its inputs ("name" or "name:k" for output k) and decoded attrs."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attr: Mapping[str, object]


def _decode_attr(value: dict) -> object:
    """A TF AttrValue in TF.js JSON → a Python value (bytes are decoded as ASCII text)."""
    if "list" in value:
        lst = value["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        if "s" in lst:
            return [base64.b64decode(v).decode("ascii") for v in lst["s"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode("ascii")
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    return value  # shape / tensor descriptions: kept as they are


def _read_weights(manifest: list[dict], folder: Path) -> dict[str, torch.Tensor]:
    """Every weight of the manifest, dequantized, as torch tensors (float32, int64 or bool)."""
    weights: dict[str, torch.Tensor] = {}
    for group in manifest:
        paths = [folder / p for p in group["paths"]]
        for p in paths:
            if not p.is_file():
                raise TfjsError(f"weight shard {p} named by the manifest does not exist")
        data = b"".join(p.read_bytes() for p in paths)
        offset = 0
        for spec in group["weights"]:
            shape = [int(s) for s in spec["shape"]]
            count = math.prod(shape)
            quant = spec.get("quantization")
            if quant:
                stored = QUANTIZED.get(quant["dtype"])
                if stored is None:
                    raise TfjsError(f"weight {spec['name']}: quantization dtype {quant['dtype']!r} is not supported")
            else:
                stored = MANIFEST_DTYPES.get(spec["dtype"])
                if stored is None:
                    raise TfjsError(f"weight {spec['name']}: dtype {spec['dtype']!r} is not supported")
            size = count * np.dtype(stored).itemsize
            if offset + size > len(data):
                raise TfjsError(f"weight {spec['name']} ({spec['dtype']} {shape}) runs past the end of "
                                f"{', '.join(p.name for p in paths)} ({len(data)} bytes)")
            values = np.frombuffer(data, dtype=stored, count=count, offset=offset).reshape(shape)
            offset += size
            if quant and quant["dtype"] in ("uint8", "uint16"):
                values = values.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
            if spec["dtype"] == "float32":
                values = values.astype(np.float32)
            elif spec["dtype"] == "int32":
                values = np.rint(values).astype(np.int64)
            else:
                values = values.astype(np.bool_)
            tensor = torch.from_numpy(np.array(values, ndmin=0))
            weights[spec["name"]] = tensor
        if offset != len(data):
            raise TfjsError(f"the manifest's weights use {offset} of the {len(data)} bytes of "
                            f"{', '.join(p.name for p in paths)}: the files do not match model.json")
    return weights


class GraphModel:
    """A TF.js graph model executed with torch.

    Attributes:
        nodes: every node by name.
        weights: the constants, by node name (float32, int64 or bool tensors).
        inputs, outputs: the signature's tensor names (``name`` or ``name:k``), in file order.
        meta: ``format``, ``generatedBy``, ``convertedBy`` of the file.
    """

    def __init__(self, nodes: Sequence[Node], weights: Mapping[str, torch.Tensor], inputs: Sequence[str],
                 outputs: Sequence[str], meta: Mapping[str, str] | None = None) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.weights = dict(weights)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.meta = dict(meta or {})
        self._cache: dict[tuple[str, str], torch.Tensor] = {}  # converted filters, by (node, purpose)
        for n in nodes:
            if n.op == "Const" and n.name not in self.weights:
                raise TfjsError(f"constant {n.name} has no value in the weights manifest")

    @classmethod
    def load(cls, path: str | Path) -> GraphModel:
        """Read ``model.json`` and its weight shards (paths relative to the JSON's folder)."""
        path = Path(path)
        if not path.is_file():
            raise TfjsError(f"TF.js model {path} does not exist")
        try:
            model = json.loads(path.read_text())
            raw_nodes = model["modelTopology"]["node"]
            manifest = model["weightsManifest"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TfjsError(f"{path} is not a TF.js graph model (model.json with modelTopology.node and "
                            f"weightsManifest): {exc!r}") from None
        if model.get("format") not in (None, "graph-model"):
            raise TfjsError(f"{path} is a {model.get('format')!r}; only TF.js graph models are supported")
        nodes = [Node(n["name"], n["op"], tuple(i for i in n.get("input", ()) if not i.startswith("^")),
                      {k: _decode_attr(v) for k, v in n.get("attr", {}).items() if k != "value"}) for n in raw_nodes]
        signature = model.get("signature") or model.get("userDefinedMetadata", {}).get("signature", {})
        inputs = list(signature.get("inputs", {}))
        outputs = list(signature.get("outputs", {}))
        if not inputs:
            inputs = [n.name for n in nodes if n.op == "Placeholder"]
        meta = {k: str(model.get(k, "")) for k in ("format", "generatedBy", "convertedBy")}
        return cls(nodes, _read_weights(manifest, path.parent), inputs, outputs, meta)

    # -- execution -------------------------------------------------------------------------------
    def _order(self, targets: Sequence[str]) -> list[str]:
        """Names of the nodes the targets depend on, each after its inputs (iterative DFS)."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done
        for target in targets:
            stack = [(_node_name(target), False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    state[name] = 2
                    order.append(name)
                    continue
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    raise TfjsError(f"the graph has a cycle through node {name}")
                if name not in self.nodes:
                    raise TfjsError(f"node {name} is not in the graph")
                state[name] = 1
                stack.append((name, True))
                for i in reversed(self.nodes[name].inputs):
                    if state.get(_node_name(i)) != 2:
                        stack.append((_node_name(i), False))
        return order

    def run(self, feeds: Mapping[str, torch.Tensor], fetch: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Execute the graph.

        Args:
            feeds: input tensors by placeholder name (``"input_1"`` or ``"input_1:0"``), in the
                layout and dtype the graph expects (e.g. ``Tensor[1, 3, 416, 416]`` float32).
            fetch: tensor names to return (``name`` or ``name:k``); default: the signature's outputs.
        Returns:
            the fetched tensors by the names asked for.
        """
        fetch = list(fetch or self.outputs)
        feeds = {_node_name(k): v for k, v in feeds.items()}
        order = self._order(fetch)
        consumers: dict[str, int] = {}
        for name in order:
            for i in self.nodes[name].inputs:
                consumers[_node_name(i)] = consumers.get(_node_name(i), 0) + 1
        keep = {_node_name(f) for f in fetch}
        values: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for name in order:
                node = self.nodes[name]
                if node.op == "Placeholder":
                    if name not in feeds:
                        raise TfjsError(f"the graph needs input {name!r}; feeds hold {sorted(feeds)}")
                    out: list[torch.Tensor] = [feeds[name]]
                elif node.op == "Const":
                    out = [self.weights[name]]
                else:
                    fn = OPS.get(node.op)
                    if fn is None:
                        raise TfjsError(f"op {node.op} (node {name}) is not supported by detector.tfjs; "
                                        f"supported: {', '.join(sorted(OPS))}")
                    args = [values[_node_name(i)][_output_index(i)] for i in node.inputs]
                    try:
                        result = fn(self, node, args)
                    except (RuntimeError, ValueError, IndexError) as exc:
                        shapes = [tuple(a.shape) for a in args]
                        raise TfjsError(f"{node.op} node {name} failed on inputs of shapes {shapes}: {exc}") from exc
                    out = list(result) if isinstance(result, (list, tuple)) else [result]
                values[name] = out
                for i in node.inputs:  # free what no later node reads
                    src = _node_name(i)
                    consumers[src] -= 1
                    if consumers[src] == 0 and src not in keep:
                        values.pop(src, None)
        return {f: values[_node_name(f)][_output_index(f)] for f in fetch}

    def filter_oihw(self, node: Node, weight: torch.Tensor, depthwise: bool) -> torch.Tensor:
        """A TF filter as a torch conv weight, converted once per node."""
        key = (node.name, "oihw")
        if key not in self._cache:
            if depthwise:  # [H, W, C, M] → [C·M, 1, H, W]: output channel c·M + m, as TF orders them
                h, w, c, m = weight.shape
                self._cache[key] = weight.permute(2, 3, 0, 1).reshape(c * m, 1, h, w).contiguous()
            else:  # [H, W, I, O] → [O, I, H, W]
                self._cache[key] = weight.permute(3, 2, 0, 1).contiguous()
        return self._cache[key]


def _node_name(ref: str) -> str:
    return ref.split(":", 1)[0]


def _output_index(ref: str) -> int:
    return int(ref.split(":", 1)[1]) if ":" in ref else 0


# -- ops ---------------------------------------------------------------------------------------------
Op = Callable[[GraphModel, Node, list[torch.Tensor]], torch.Tensor | Sequence[torch.Tensor]]
OPS: dict[str, Op] = {}


def op(*names: str) -> Callable[[Op], Op]:
    def wrap(fn: Op) -> Op:
        for n in names:
            OPS[n] = fn
        return fn

    return wrap


def _ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _spatial(node: Node) -> tuple[bool, str]:
    """(channels last?, padding mode) of a conv / pool node."""
    fmt = node.attr.get("data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW"):
        raise TfjsError(f"{node.op} node {node.name}: data_format {fmt!r} is not supported (NHWC, NCHW)")
    return fmt == "NHWC", str(node.attr.get("padding", "VALID"))


def _hw(values: Sequence[int], channels_last: bool) -> tuple[int, int]:
    return (values[1], values[2]) if channels_last else (values[2], values[3])


def _pads(node: Node, mode: str, size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
          dilation: Sequence[int], channels_last: bool) -> list[int]:
    """[top, bottom, left, right] padding of a 2-D window op."""
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode == "SAME":
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads += [total // 2, total - total // 2]
        return pads
    if mode == "EXPLICIT":
        explicit = list(node.attr.get("explicit_paddings", []))
        pairs = [explicit[i:i + 2] for i in range(0, len(explicit), 2)]
        h, w = (pairs[1], pairs[2]) if channels_last else (pairs[2], pairs[3])
        return [*h, *w]
    raise TfjsError(f"{node.op} node {node.name}: padding {mode!r} is not supported (VALID, SAME, EXPLICIT)")


def _to_nchw(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if channels_last else x


def _from_nchw(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if channels_last else x


def _activation(name: str, x: torch.Tensor, node: Node, extra: torch.Tensor | None = None) -> torch.Tensor:
    if name == "Relu":
        return F.relu(x)
    if name == "Relu6":
        return F.relu6(x)
    if name == "Elu":
        return F.elu(x)
    if name == "Sigmoid":
        return torch.sigmoid(x)
    if name == "Tanh":
        return torch.tanh(x)
    if name == "LeakyRelu":
        return F.leaky_relu(x, float(node.attr.get("leakyrelu_alpha", node.attr.get("alpha", 0.2))))
    if name == "Prelu" and extra is not None:
        return torch.where(x >= 0, x, x * extra)
    raise TfjsError(f"{node.op} node {node.name}: fused activation {name!r} is not supported")


@op("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def _conv(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    x, weight, *extra = args
    channels_last, mode = _spatial(node)
    depthwise = "Depthwise" in node.op
    strides = _hw(node.attr.get("strides", [1, 1, 1, 1]), channels_last)
    dilations = _hw(node.attr.get("dilations", [1, 1, 1, 1]), channels_last)
    x = _to_nchw(x, channels_last)
    w = graph.filter_oihw(node, weight, depthwise)
    in_channels = x.shape[1]
    groups = in_channels if depthwise else in_channels // w.shape[1]
    if groups * (1 if depthwise else w.shape[1]) != in_channels:
        raise TfjsError(f"{node.op} node {node.name}: {in_channels} input channels do not match a filter "
                        f"of shape {tuple(weight.shape)}")
    top, bottom, left, right = _pads(node, mode, x.shape[2:], w.shape[2:], strides, dilations, channels_last)
    if top == bottom and left == right:
        y = F.conv2d(x, w, None, strides, (top, left), dilations, groups)
    else:
        y = F.conv2d(F.pad(x, (left, right, top, bottom)), w, None, strides, 0, dilations, groups)
    fused = list(node.attr.get("fused_ops", []))
    if fused:
        # the extra inputs: BiasAdd → [bias]; FusedBatchNorm → [scale, offset, mean, variance]; Prelu → [alpha]
        first, *activations = fused
        if first == "BiasAdd":
            y = y + extra[0].view(1, -1, 1, 1)
            used = 1
        elif first in ("FusedBatchNorm", "FusedBatchNormV3"):
            scale, offset, mean, var = (e.view(1, -1, 1, 1) for e in extra[:4])
            y = (y - mean) * torch.rsqrt(var + float(node.attr.get("epsilon", 1e-3))) * scale + offset
            used = 4
        else:
            activations, used = fused, 0
        if len(activations) > 1:
            raise TfjsError(f"{node.op} node {node.name}: fused_ops {fused} has more than one activation")
        if activations:
            y = _activation(activations[0], y, node, extra[used] if len(extra) > used else None)
    return _from_nchw(y, channels_last)


@op("MaxPool")
def _max_pool(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    channels_last, mode = _spatial(node)
    kernel = _hw(node.attr["ksize"], channels_last)
    strides = _hw(node.attr["strides"], channels_last)
    x = _to_nchw(args[0], channels_last)
    top, bottom, left, right = _pads(node, mode, x.shape[2:], kernel, strides, (1, 1), channels_last)
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))  # TF's padding never wins a max
    return _from_nchw(F.max_pool2d(x, kernel, strides), channels_last)


def _resize_axis(x: torch.Tensor, dim: int, out: int, align_corners: bool, half_pixel: bool) -> torch.Tensor:
    """TF's bilinear resize along one axis (the 2-D resize is separable)."""
    n = x.shape[dim]
    scale = (n - 1) / (out - 1) if align_corners and out > 1 else n / out
    pos = torch.arange(out, dtype=torch.float64)
    src = (pos + 0.5) * scale - 0.5 if half_pixel else pos * scale
    floor = torch.floor(src)
    lo = floor.clamp(0, n - 1).long()
    hi = torch.ceil(src).clamp(0, n - 1).long()
    frac = (src - floor).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = out
    a, b = x.index_select(dim, lo), x.index_select(dim, hi)
    return a + (b - a) * frac.view(shape)


@op("ResizeBilinear")
def _resize_bilinear(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    x, size = args  # x: [B, H, W, C]
    h, w = _ints(size)
    align, half = bool(node.attr.get("align_corners", False)), bool(node.attr.get("half_pixel_centers", False))
    return _resize_axis(_resize_axis(x, 1, h, align, half), 2, w, align, half)


@op("Identity")
def _identity(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0]


@op("Add", "AddV2")
def _add(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0] + args[1]


@op("Sub")
def _sub(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0] - args[1]


@op("Mul")
def _mul(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0] * args[1]


@op("FloorDiv")
def _floor_div(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return torch.div(args[0], args[1], rounding_mode="floor")


@op("FloorMod")
def _floor_mod(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return torch.remainder(args[0], args[1])  # the sign of the divisor, as TF's FloorMod


@op("Equal")
def _equal(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0] == args[1]


@op("Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu")
def _unary_activation(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return _activation(node.op, args[0], node)


@op("Cast")
def _cast(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    target = str(node.attr.get("DstT"))
    if target not in DTYPES:
        raise TfjsError(f"Cast node {node.name}: destination type {target} is not supported")
    x = args[0]
    if DTYPES[target] == torch.int64 and x.is_floating_point():
        x = torch.trunc(x)  # TF casts float → int by truncation
    return x.to(DTYPES[target])


@op("Transpose")
def _transpose(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0].permute(_ints(args[1]))


@op("Reshape")
def _reshape(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0].reshape(_ints(args[1]))


@op("ExpandDims")
def _expand_dims(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0].unsqueeze(_ints(args[1])[0])


@op("ConcatV2")
def _concat(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    *parts, axis = args
    dtype = torch.float32 if any(p.is_floating_point() for p in parts) else parts[0].dtype
    return torch.cat([p.to(dtype) for p in parts], _ints(axis)[0])


@op("SplitV")
def _split_v(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    x, sizes, axis = args
    dim = _ints(axis)[0]
    sizes_list = _ints(sizes)
    if -1 in sizes_list:
        sizes_list[sizes_list.index(-1)] = x.shape[dim] - sum(s for s in sizes_list if s != -1)
    return list(torch.split(x, sizes_list, dim))


@op("Pad", "PadV2")
def _pad(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    x, paddings = args[0], _ints(args[1])
    flat: list[int] = []
    for d in reversed(range(x.dim())):  # F.pad wants the last dimension first
        flat += paddings[2 * d: 2 * d + 2]
    value = float(args[2].item()) if node.op == "PadV2" else 0.0
    return F.pad(x, flat, value=value)


@op("Mean")
def _mean(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0].mean(dim=_ints(args[1]), keepdim=bool(node.attr.get("keep_dims", False)))


@op("TopKV2")
def _top_k(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    x, k = args
    values, indices = torch.topk(x, _ints(k)[0], dim=-1, largest=True, sorted=True)
    return [values, indices.to(torch.int64)]


@op("GatherV2")
def _gather(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    params, indices, axis = args
    if int(node.attr.get("batch_dims", 0)) != 0:
        raise TfjsError(f"GatherV2 node {node.name}: batch_dims {node.attr.get('batch_dims')} is not supported")
    dim = _ints(axis)[0] % params.dim()
    picked = params.index_select(dim, indices.reshape(-1).long())
    return picked.reshape(*params.shape[:dim], *indices.shape, *params.shape[dim + 1:])


@op("StridedSlice")
def _strided_slice(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    x, begin, end, strides = args[0], _ints(args[1]), _ints(args[2]), _ints(args[3])
    masks = {k: int(node.attr.get(k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                                                   "shrink_axis_mask")}
    if masks["ellipsis_mask"] or masks["new_axis_mask"]:
        raise TfjsError(f"StridedSlice node {node.name}: ellipsis_mask/new_axis_mask are not supported")
    index: list[object] = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides, strict=True)):
        if masks["shrink_axis_mask"] >> i & 1:
            index.append(b)
            continue
        if s < 0:
            raise TfjsError(f"StridedSlice node {node.name}: negative strides are not supported")
        index.append(slice(None if masks["begin_mask"] >> i & 1 else b, None if masks["end_mask"] >> i & 1 else e, s))
    return x[tuple(index)]


@op("SparseToDense")
def _sparse_to_dense(graph: GraphModel, node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    indices, shape, values, default = args
    dense = torch.full(_ints(shape), default.item(), dtype=values.dtype)
    if indices.numel():
        idx = indices.reshape(-1, 1) if indices.dim() < 2 else indices
        dense[tuple(idx.long().t())] = values.expand(idx.shape[0]) if values.dim() == 0 else values
    return dense
