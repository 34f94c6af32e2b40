"""int8 post-training static quantization of a detector's backbone, and dynamic int8 of its box head.

On a CPU the backbone is most of a frame's time. ``torch.ao``'s FX graph mode quantizes it for the
x86 backend (oneDNN / fbgemm kernels, VNNI or AMX where the CPU has them): the convolutions, their
batch norms folded in and their activations fused, run on uint8 activations and int8 weights with
scales measured on real frames (``calibrate``). The backbone keeps its interface — float
``Tensor[B, 3, H, W]`` in, ``OrderedDict[str, Tensor[B, C, h, w]]`` float out — so the RPN and the
RoI head do not change, and any input size works (the quantized kernels take any shape).

It is generic over the module: the whole backbone is traced when FX can trace it (torchvision's
FPN backbones, the ``paper`` backbones); when a part cannot be traced (Python control flow on
tensor values), the largest traceable sub-modules that hold convolutions are quantized each on its
own ("islands": a quantize at the entry and a dequantize at the exit of each), the rest stays float.

The box head's ``nn.Linear`` layers (the two fc layers, ~6272×1024 weights for 1000 RoIs a frame)
use dynamic int8 quantization (weights int8, activation scales per call): no calibration needed.

Activation ranges are the calibration frames' min and max (``MinMaxObserver``), 8 bits wide; weights
are 8 bits on a CPU with VNNI (the u8×s8 dot products accumulate in 32 bits) and 7 bits without it
(fbgemm's AVX2 path sums pairs in 16 bits and would saturate). torch's own x86 default — a histogram
observer, which clips the rarest large activations, at 7 bits everywhere — measured far worse on the
default v3 model (held-out AP50 0.41 against fp32's 0.46; min/max at 8 bits: 0.48): a detector's trunk
lives on those large activations. The first convolution (3 input channels, 27 weights a filter) is the
layer int8 hurts most in the default model; its verdicts keep it in float. ``scheme()`` names what this
machine uses; the int8 accuracy verdict (``detector.profiles``) is kept per scheme.

torch 2.10+ calls FX graph mode quantization deprecated in favour of torchao's PT2E flow; PT2E
needs ``torch.compile`` (a C++ compiler at run time) for its speed, FX mode runs eagerly. The
deprecation warnings are silenced here.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detector.config import ConfigError
from detector.machine import cpu_flags

log = logging.getLogger(__name__)

ENGINE = "x86"  # oneDNN + fbgemm: the x86 backend of torch.ao
_QUANTIZABLE = (nn.Conv2d, nn.Linear)


class QuantizationError(RuntimeError):
    """The backbone could not be quantized; the message is one line."""


def int8_supported() -> bool:
    """Whether this torch build has the x86 quantized engine."""
    return ENGINE in torch.backends.quantized.supported_engines


# torch's x86 engine runs its int8 convolutions on oneDNN only where cpuinfo reports AVX512-VNNI (AMX
# CPUs have it too); elsewhere on fbgemm, whose AVX2 kernels sum u8×s8 pairs in 16 bits. A CPU with
# AVX-VNNI alone (Alder Lake) gets the 7-bit weights, which are exact on either kernel
_VNNI_FLAGS = ("avx512_vnni",)


# oneDNN instruction sets without a VNNI dot product: ``ONEDNN_MAX_CPU_ISA`` set to one of them makes
# oneDNN's int8 kernels sum u8×s8 pairs in 16 bits (pmaddubsw) even on a VNNI CPU
_ONEDNN_NO_VNNI = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def cpu_has_vnni(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has the VNNI dot product torch's int8 convolutions use (AVX512-VNNI), from /proc/cpuinfo's
    flags (or ``cpuinfo``'s), and — for this machine — oneDNN is not capped below it
    (``ONEDNN_MAX_CPU_ISA``). False where the flags cannot be read (other systems): the safe, 7-bit-weight choice."""
    if cpuinfo is None and os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ONEDNN_NO_VNNI:
        return False
    return bool(cpu_flags(cpuinfo) & set(_VNNI_FLAGS))


SCHEMES = ("minmax-u8", "minmax-u8w7", "minmax-u7")
SCHEME_ENV = "FRCNN_INT8_SCHEME"


def scheme(vnni: bool | None = None) -> str:
    """The quantization this machine uses, as stored with an int8 verdict: 8-bit activations and
    weights with VNNI ("minmax-u8"); without it 8-bit activations and 7-bit weights ("minmax-u8w7":
    a pair of u8×s7 products, at most 2·255·64 = 32 640, fits the 16-bit sums of fbgemm's AVX2
    kernels). "minmax-u7" (7-bit activations, 8-bit weights, torch's "reduce_range") is the other
    exact choice there; it measured worse on the held-out pictures (docs/benchmarks.md).
    ``$FRCNN_INT8_SCHEME`` makes a VNNI machine quantize as an AVX2-only one does — both schemes give
    the same int8 values on either kernel, so their verdicts can be measured anywhere (8-bit on both
    cannot be forced on a CPU without VNNI: it would saturate)."""
    if vnni is None:
        forced = os.environ.get(SCHEME_ENV, "")
        if forced:
            if forced not in SCHEMES:
                raise ConfigError(f"{SCHEME_ENV}={forced!r}: expected one of {', '.join(SCHEMES)}")
            if forced == "minmax-u8" and not cpu_has_vnni():
                raise ConfigError(f"{SCHEME_ENV}=minmax-u8 needs a CPU with VNNI (8-bit sums saturate without it)")
            return forced
        vnni = cpu_has_vnni()
    return "minmax-u8" if vnni else "minmax-u8w7"


def qconfig_mapping(vnni: bool | None = None):
    """The ``QConfigMapping`` of ``scheme(vnni)``: min/max activation ranges (8 bits; 7 for
    "minmax-u7") and per-channel symmetric weights, as torch's x86 default has them (7 bits: [-64, 63])."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    name = scheme(vnni)
    default = get_default_qconfig_mapping(ENGINE)
    weight = default.global_qconfig.weight
    if name == "minmax-u8w7":
        weight = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                    quant_min=-64, quant_max=63)
    top = 127 if name == "minmax-u7" else 255  # 7 bits: torch's "reduce_range"
    qconfig = QConfig(activation=MinMaxObserver.with_args(quant_min=0, quant_max=top), weight=weight)
    return default.set_global(qconfig)


def quantize_backbone(backbone: nn.Module, calibration: Sequence[torch.Tensor], *,
                      exclusive: Callable[[], AbstractContextManager] | None = None,
                      float_layers: Sequence[str] = ()) -> nn.Module:
    """An int8 copy of ``backbone`` calibrated on ``calibration`` (the original is untouched).

    Args:
        backbone: maps a normalised float ``Tensor[B, 3, H, W]`` to a tensor or an
            ``OrderedDict[str, Tensor]`` (every backbone of this project and of torchvision).
        calibration: real, preprocessed input batches ``Tensor[B, 3, H, W]`` (the model's transform
            applied) — activation ranges are measured on these; 8–16 frames are plenty.
        exclusive: a context manager (factory) held while ``backbone`` is copied and while torch.fx
            traces — its tracer patches ``nn.Module.__call__`` for the whole process, so no other
            module may run then (the detector passes its run lock). Calibrating, most of the time,
            runs outside it.
        float_layers: qualified names of modules of ``backbone`` left in float (a quantize before and a
            dequantize after each): the layers whose int8 error costs the most accuracy (a model's
            profile names them per scheme, measured with ``run.py eval --int8-float``).
    Returns:
        a module with the same call signature and float outputs; ``.islands`` lists the names of
        the quantized parts ("" = the whole backbone).
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    if not int8_supported():
        raise QuantizationError(f"this torch build has no {ENGINE!r} quantized engine "
                                f"(has: {', '.join(torch.backends.quantized.supported_engines)})")
    if not calibration:
        raise QuantizationError("int8 needs calibration frames: none were given")
    exclusive = exclusive or nullcontext
    names = {name for name, _ in backbone.named_modules() if name}
    unknown = [layer for layer in float_layers if layer not in names]
    if unknown:
        raise QuantizationError(f"no layer {', '.join(unknown)} in {type(backbone).__name__} to keep in float "
                                f"(its convolutions: {', '.join(n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d))})")
    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX mode's deprecation notices (see the module docstring)
        with exclusive():
            model = _float_copy(backbone)
            whole = _try_prepare(model, (calibration[0],), "", float_layers)
            islands = [""] if whole is not None else _prepare_islands(model, calibration[0], float_layers)
        if not islands:
            raise QuantizationError(f"{type(backbone).__name__}: no part with convolutions could be traced by torch.fx")
        observed = whole if whole is not None else model
        with torch.inference_mode(False), torch.no_grad():  # observers update buffers: no inference tensors
            for batch in calibration:
                observed(batch)
        with exclusive():
            if whole is not None:
                model = convert_fx(whole)
            else:
                for name in islands:
                    parent_name, _, attr = name.rpartition(".")
                    parent = model.get_submodule(parent_name) if parent_name else model
                    setattr(parent, attr, convert_fx(getattr(parent, attr)))
    model.islands = tuple(islands)
    model.float_layers = tuple(float_layers)
    log.info("int8 backbone: quantized %s", ", ".join(n or "(all)" for n in islands))
    return model.eval()


def quantize_box_head(head: nn.Module) -> nn.Module:
    """A copy of the RoI box head with every ``nn.Linear`` dynamically quantized to int8."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(head).eval(), {nn.Linear}, dtype=torch.qint8)


# ----------------------------------------------------------------------------- helpers
def _float_copy(backbone: nn.Module) -> nn.Module:
    """A contiguous fp32 copy in eval mode, with FrozenBatchNorm2d swapped for an equivalent
    BatchNorm2d (so that FX folds it into the conv before it) and in-place activations made
    out-of-place (the quantized kernels have no in-place variant and warn on every call)."""
    model = copy.deepcopy(backbone).float().eval().to(memory_format=torch.contiguous_format)
    _swap_frozen_bn(model)
    for module in model.modules():
        if hasattr(module, "inplace") and isinstance(module.inplace, bool):
            module.inplace = False
    return model


def _swap_frozen_bn(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, FrozenBatchNorm2d):
            bn = nn.BatchNorm2d(child.weight.numel(), eps=child.eps).eval()
            with torch.no_grad():
                bn.weight.copy_(child.weight)
                bn.bias.copy_(child.bias)
                bn.running_mean.copy_(child.running_mean)
                bn.running_var.copy_(child.running_var)
            setattr(module, name, bn)
        else:
            _swap_frozen_bn(child)


def _has_quantizable(module: nn.Module) -> bool:
    return any(isinstance(m, _QUANTIZABLE) for m in module.modules())


def _try_prepare(module: nn.Module, example: tuple, name: str, float_layers: Sequence[str] = ()) -> nn.Module | None:
    """``prepare_fx`` of ``module`` (observers inserted, conv+bn+activation fused; ``float_layers``,
    named from the backbone, left out), or None when torch.fx cannot trace it. ``name``: the module's
    name in the backbone ("" for the backbone itself)."""
    from torch.ao.quantization.quantize_fx import prepare_fx

    mapping = qconfig_mapping()
    prefix = f"{name}." if name else ""
    for layer in float_layers:
        if layer.startswith(prefix):
            mapping = mapping.set_module_name(layer[len(prefix):], None)
    try:
        return prepare_fx(module, mapping, example)
    except Exception as exc:  # noqa: BLE001 — FX raises many types; any failure means "try its parts"
        first = str(exc).splitlines()[0] if str(exc) else ""
        log.debug("int8: %s cannot be traced (%s: %s); trying its parts", name or "(backbone)", type(exc).__name__, first)
        return None


def _prepare_islands(model: nn.Module, example: torch.Tensor, float_layers: Sequence[str] = ()) -> list[str]:
    """Replace the largest traceable sub-modules of ``model`` that hold convolutions or linears by
    observed copies, in place; returns their qualified names."""
    inputs = _capture_inputs(model, example)
    islands: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for child_name, child in list(module.named_children()):
            name = f"{prefix}.{child_name}" if prefix else child_name
            if not _has_quantizable(child) or name in float_layers:
                continue
            prepared = _try_prepare(child, inputs[name], name, float_layers) if name in inputs else None
            if prepared is not None:
                setattr(module, child_name, prepared)
                islands.append(name)
            else:
                visit(name, child)

    visit("", model)
    return islands


def _capture_inputs(model: nn.Module, example: torch.Tensor) -> dict[str, tuple]:
    """The positional inputs every sub-module receives on one forward of ``example`` (the first
    call of each), so that each can be traced on its own with real example inputs."""
    seen: dict[str, tuple] = {}
    hooks = [module.register_forward_pre_hook(lambda mod, args, name=name: seen.setdefault(name, tuple(args)))
             for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def to_images(transform: Callable, frames: Sequence, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Calibration batches from uint8 RGB frames ``[H, W, 3]``: each through the model's own
    transform (resize + normalise), as ``detect`` feeds the backbone. Returns ``Tensor[1, 3, h, w]``s."""
    out = []
    with torch.no_grad():
        for frame in frames:
            image = torch.as_tensor(frame).to(device).permute(2, 0, 1).float().div_(255.0)
            image_list, _ = transform([image])
            out.append(image_list.tensors)
    return out
