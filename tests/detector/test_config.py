import pytest

from detector.config import ConfigError, DetectorConfig


def test_defaults_are_valid():
    cfg = DetectorConfig()
    assert cfg.model == "default" and cfg.proposals > 0
    assert cfg.effective_pre_nms >= cfg.proposals


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("proposals", 0, "proposals 0"),
        ("proposals", -5, "proposals -5"),
        ("proposals", 2.5, "proposals 2.5"),
        ("pre_nms_proposals", 0, "pre_nms_proposals 0"),
        ("score_threshold", 1.5, "score_threshold 1.5"),
        ("nms_threshold", -0.1, "nms_threshold -0.1"),
        ("precision", "fp8", "precision 'fp8'"),
        ("device", "tpu", "device 'tpu'"),
        ("device", "cuda:x", "device 'cuda:x'"),  # torch.device's own RuntimeError on a GPU machine
        ("device", "cuda:-1", "device 'cuda:-1'"),
        ("device", None, "device None"),  # an AttributeError ('NoneType' has no startswith)
        ("model", "yolo", "model 'yolo'"),
        ("min_size", 8, "min_size 8"),
        ("classes", "person", "classes 'person'"),
        ("backbone", "vgg16", "backbone 'vgg16' is unknown; expected one of mobilenet_v2, nanodet, resnet18"),
    ],
)
def test_bad_values_are_named(field, value, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(".", r"\.")):
        DetectorConfig(**{field: value})


def test_min_larger_than_max_is_refused():
    with pytest.raises(ConfigError, match="min_size 800 is larger than max_size 600"):
        DetectorConfig(min_size=800, max_size=600)


def test_config_is_frozen_and_with_revalidates():
    cfg = DetectorConfig()
    with pytest.raises(AttributeError):
        cfg.proposals = 10  # type: ignore[misc]
    assert cfg.with_(proposals=50).proposals == 50
    with pytest.raises(ConfigError):
        cfg.with_(proposals=0)
