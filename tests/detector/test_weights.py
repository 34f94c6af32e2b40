import urllib.error

import numpy as np
import pytest
import torch

from detector import Detector, DetectorConfig, WeightsError
from detector.builders import build_torchvision
from detector.factory import create_model
from detector.weights import load_checkpoint, save_checkpoint

TV = "fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture(scope="module")
def tv_state():
    torch.manual_seed(1)
    return build_torchvision(TV).state_dict()


def test_a_good_state_dict_file_loads_and_gives_the_same_detections(tmp_path, tv_state, small_frame):
    path = tmp_path / "tv.pth"
    torch.save(tv_state, path)
    cfg = DetectorConfig(model=TV, weights=str(path), device="cpu", score_threshold=0.0)
    det = Detector(cfg)
    assert det.info.trained and det.info.source == str(path) and not det.notes
    torch.manual_seed(1)
    ref = Detector(cfg, model=build_torchvision(TV), class_names=det.class_names)
    a, b = det.detect([small_frame])[0], ref.detect([small_frame])[0]
    assert len(a) > 0
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_a_checkpoint_dict_loads(tmp_path, tv_state):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model_state_dict": tv_state}, path)
    model, names, info = create_model(DetectorConfig(model=TV, weights=str(path)))
    assert info.trained and len(names) == 91


def test_wrong_keys_and_shapes_are_named(tmp_path, tv_state):
    missing = dict(tv_state)
    missing.pop("rpn.head.conv.0.0.weight")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="key 'rpn.head.conv.0.0.weight' .* is missing"):
        create_model(DetectorConfig(model=TV, weights=str(tmp_path / "missing.pth")))

    shaped = dict(tv_state)
    shaped["rpn.head.cls_logits.weight"] = torch.zeros(3, 256, 1, 1)
    torch.save(shaped, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"'rpn.head.cls_logits.weight' has shape \(3, 256, 1, 1\), the model expects \(15, 256, 1, 1\)"):
        create_model(DetectorConfig(model=TV, weights=str(tmp_path / "shape.pth")))

    extra = dict(tv_state, **{"head.extra": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match="unexpected key 'head.extra'"):
        create_model(DetectorConfig(model=TV, weights=str(tmp_path / "extra.pth")))


class Payload:
    """Stands for code hidden in a checkpoint: unpickling it would construct this object."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickled_payload_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Payload()}, path)
    with pytest.raises(WeightsError, match="refused: it holds pickled Python objects"):
        create_model(DetectorConfig(model=TV, weights=str(path)))
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is not a PyTorch weights file"), (b"hello, not a model\n", "is not a PyTorch weights file")],
)
def test_files_that_are_not_models(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        create_model(DetectorConfig(model=TV, weights=str(path)))
    with pytest.raises(WeightsError, match="does not exist"):
        create_model(DetectorConfig(model=TV, weights=str(tmp_path / "nope.pt")))
    with pytest.raises(WeightsError, match="is a directory"):
        create_model(DetectorConfig(model=TV, weights=str(tmp_path)))


def test_offline_torchvision_download_gives_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError) as info:
        create_model(DetectorConfig(model=TV, weights="torchvision"))
    message = str(info.value)
    assert "\n" not in message and "pass it with --weights FILE" in message and "name resolution" in message
    assert calls and calls[0].endswith(".pth")  # it really tried the weights API


def test_torchvision_weights_only_for_torchvision_models():
    with pytest.raises(WeightsError, match="weights 'torchvision' exist only for"):
        create_model(DetectorConfig(model="paper", weights="torchvision"))


def test_our_checkpoint_round_trips_in_fp16(tmp_path, small_frame):
    cfg = DetectorConfig(model="paper", backbone="resnet18", weights="random", min_size=128, max_size=192,
                         device="cpu", score_threshold=0.0)
    original = Detector(cfg)
    path = save_checkpoint(tmp_path / "m.pt", original.model, model_name="paper", arch={"backbone": "resnet18"},
                           class_names=original.class_names, meta={"note": "test"})
    obj = load_checkpoint(path)
    assert obj["state_dict"]["roi_heads.box_head.fc6.weight"].dtype == torch.float16
    loaded = Detector(cfg.with_(weights=str(path)))
    assert loaded.info.trained and loaded.info.meta == {"note": "test"}
    a, b = original.detect([small_frame])[0], loaded.detect([small_frame])[0]
    assert len(a) > 0 and len(b) > 0
    # fp16 storage changes the weights slightly: the strongest box stays where it was.
    best_a, best_b = a.boxes[a.scores.argmax()], b.boxes[b.scores.argmax()]
    np.testing.assert_allclose(best_a, best_b, atol=2.0)


def test_a_checkpoint_names_its_own_score_threshold(tmp_path, tiny_detector):
    """No --score-threshold: the model's own (meta "score_threshold"), else 0.5; a given one wins; a bad
    one in the checkpoint is one ConfigError line naming the file."""
    from detector.config import ConfigError

    arch = {"backbone": "resnet18", "min_size": 128, "max_size": 160}

    def saved(name: str, meta: dict):
        return save_checkpoint(tmp_path / name, tiny_detector.model, model_name="paper", arch=arch,
                               class_names=tiny_detector.class_names, meta=meta)

    own = saved("own.pt", {"score_threshold": 0.3})
    assert Detector(DetectorConfig(weights=str(own), device="cpu")).score_threshold == pytest.approx(0.3)
    assert Detector(DetectorConfig(weights=str(own), device="cpu", score_threshold=0.6)).score_threshold == pytest.approx(0.6)
    assert Detector(DetectorConfig(weights=str(saved("plain.pt", {})), device="cpu")).score_threshold == 0.5
    with pytest.raises(ConfigError, match="bad.pt"):
        Detector(DetectorConfig(weights=str(saved("bad.pt", {"score_threshold": 7})), device="cpu"))


def test_untrained_weights_are_said_clearly():
    det = Detector(DetectorConfig(model="paper", backbone="resnet18", weights="random", device="cpu"))
    assert not det.info.trained
    assert any("UNTRAINED" in n for n in det.notes)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("state_dict", "DELETE", "holds no state dict of tensors"),
    ("state_dict", {"w": 1}, "holds no state dict of tensors"),
    ("arch", "resnet18", "its 'arch' is a str, expected a dict"),
    ("class_names", 3, "its 'class_names' is a int, expected a list of names"),
    ("class_names", [1, 2], "its 'class_names' is a list, expected a list of names"),
    ("meta", [0.5], "its 'meta' is a list, expected a dict"),
])
def test_a_broken_checkpoint_field_is_one_line_naming_it(tmp_path, tiny_weights, field, value, message):
    """Our checkpoint format with a field missing or of the wrong type: one WeightsError line naming
    the file and the field (it was a bare KeyError, ValueError or TypeError from deep in the factory)."""
    obj = load_checkpoint(tiny_weights)
    if value == "DELETE":
        del obj[field]
    else:
        obj[field] = value
    path = tmp_path / "broken ckpt.pt"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match=message) as info:
        create_model(DetectorConfig(weights=str(path), device="cpu"))
    assert "broken ckpt.pt" in str(info.value) and "\n" not in str(info.value)


def test_an_unreadable_file_is_said_so_not_called_a_bad_file(tmp_path, tiny_weights, monkeypatch):
    """A read error (permissions, a disk error) said 'is not a PyTorch weights file'."""
    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(WeightsError, match=r"weights file .*tiny.pt cannot be read \(Permission denied\)$"):
        create_model(DetectorConfig(weights=str(tiny_weights), device="cpu"))
