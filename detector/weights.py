"""Loading and saving weights: torchvision's weights API, user files, and our checkpoint format.

Files are read with ``torch.load(..., weights_only=True)``: a file that carries pickled Python
objects (code that would run on load) is refused, never executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from detector.messages import first_line

CHECKPOINT_FORMAT = "frcnn-video/1"


class WeightsError(RuntimeError):
    """Weights could not be found, fetched or matched to the model; the message is one line."""


def read_weights_file(path: str | Path) -> dict:
    """Read a ``.pt``/``.pth`` file safely; returns the raw dict (a state dict or a checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    if path.is_dir():
        raise WeightsError(f"weights file {path} is a directory, expected a .pt/.pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = first_line(exc)
        if "Weights only load failed" in str(exc) or "Unsupported global" in str(exc):
            raise WeightsError(
                f"weights file {path} was refused: it holds pickled Python objects, not only tensors ({first[:160]})"
            ) from None
        raise WeightsError(f"weights file {path} is not a PyTorch weights file ({first[:160]})") from None
    except OSError as exc:  # permissions, a disk or network-share error: the file may be fine
        raise WeightsError(f"weights file {path} cannot be read ({exc.strerror or first_line(exc)})") from None
    except Exception as exc:  # torch.load raises many types on garbage (KeyError, EOFError, ...): report it
        first = first_line(exc)
        raise WeightsError(f"weights file {path} is not a PyTorch weights file ({first[:160]})") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"weights file {path} holds a {type(obj).__name__}, expected a state dict or a checkpoint dict")
    return obj


def split_checkpoint(obj: dict, source: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Separate a checkpoint dict into (state_dict, info). A bare state dict gives info = {}."""
    if "state_dict" in obj or "model_state_dict" in obj or "model" in obj and isinstance(obj["model"], dict):
        state = obj.get("state_dict", obj.get("model_state_dict", obj.get("model")))
        info = {k: v for k, v in obj.items() if k not in ("state_dict", "model_state_dict")}
        if info.get("model") is state:
            info.pop("model")
    else:
        state, info = obj, {}
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{source} holds no state dict of tensors (keys: {', '.join(list(obj)[:6])})")
    return state, info


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise a one-line ``WeightsError`` naming the first missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise WeightsError(f"{source} does not fit the model: key {key!r} {tuple(tensor.shape)} is missing")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{source} does not fit the model: {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    for key in state:
        if key not in expected:
            raise WeightsError(f"{source} does not fit the model: unexpected key {key!r}")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Check, then load (any dtype: fp16 checkpoints are cast to the model's dtype)."""
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)


def torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    """COCO weights through torchvision's weights API: from the torch hub cache, or downloaded.

    Offline, this fails with one line that says how to pass a file instead.
    """
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        reason = str(getattr(exc, "reason", exc)).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"cannot download torchvision's COCO weights for {name} ({weights.url}): {reason}. "
            f"Offline? Download that file on a connected machine and pass it with --weights FILE"
        ) from None


def save_checkpoint(path: str | Path, model: nn.Module, *, model_name: str, arch: dict, class_names, meta: dict | None = None,
                    half: bool = True) -> Path:
    """Write our checkpoint format: a plain dict of tensors and primitives, loadable with weights_only=True.

    ``half`` stores floating-point tensors in fp16 (half the size; loading casts them back).
    """
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": model_name,
        "arch": dict(arch),
        "class_names": list(class_names),
        "meta": dict(meta or {}),
        "state_dict": state,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read one of our checkpoints; returns its dict (format, model, arch, class_names, meta, state_dict)."""
    obj = read_weights_file(path)
    if obj.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a frcnn-video checkpoint (format {obj.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
    return obj
