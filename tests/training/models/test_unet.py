import pytest
import torch

from training.models import ModelConfig, MultiTaskUNet
from training.models.instance_norm import AxisWiseInstanceNorm


def _model(**kwargs: object) -> MultiTaskUNet:
    torch.manual_seed(0)
    config = ModelConfig(heads={"ct-organs": 9, "pet-lesion": 2}, **kwargs)  # type: ignore[arg-type]
    return MultiTaskUNet(config)


def test_heads_give_logits_of_input_size() -> None:
    model = _model(classifier_classes=2)
    x = torch.randn(2, 1, 16, 24, 8)
    assert model(x, "ct-organs").shape == (2, 9, 16, 24, 8)
    assert model(x, "pet-lesion").shape == (2, 2, 16, 24, 8)
    assert model.classify(x).shape == (2, 2)


def test_parameter_groups_partition_the_model() -> None:
    model = _model(classifier_classes=2)
    groups = model.parameter_groups()
    assert set(groups) == {"shared", "task:ct-organs", "task:pet-lesion", "task:lesion-class"}
    grouped = sum(p.numel() for ps in groups.values() for p in ps)
    assert grouped == sum(p.numel() for p in model.parameters())
    # The encoder alone is shared: a head's gradient never touches another head.
    x = torch.randn(1, 1, 16, 16, 16)
    model(x, "pet-lesion").sum().backward()
    assert all(p.grad is None for p in groups["task:ct-organs"])
    assert all(p.grad is not None for p in groups["shared"])
    assert set(model.state_dict_groups()) == set(groups)


def test_deep_supervision_outputs_are_coarser() -> None:
    model = _model(deep_supervision=True)
    outputs = model.segment(torch.randn(1, 1, 32, 32, 32), "ct-organs")
    assert [tuple(o.shape[2:]) for o in outputs] == [(32, 32, 32), (16, 16, 16), (8, 8, 8)]


def test_config_round_trip_and_validation() -> None:
    config = ModelConfig(heads={"pet-lesion": 2}, filters=(4, 8), classifier_classes=2)
    assert ModelConfig.from_dict(config.as_dict()) == config
    with pytest.raises(ValueError, match="two classes"):
        ModelConfig(heads={"x": 1})
    with pytest.raises(ValueError, match="multiple of 8"):
        _model()(torch.randn(1, 1, 12, 16, 16), "ct-organs")


def test_axis_wise_instance_norm_equals_torch_instance_norm() -> None:
    x = 50.0 + 10.0 * torch.randn(2, 3, 12, 10, 8, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.InstanceNorm3d(3)(x)
    assert torch.allclose(AxisWiseInstanceNorm()(x), expected, atol=1e-4)


def test_network_uses_only_axis_wise_norms_and_keeps_its_state_dict_keys() -> None:
    model = _model(deep_supervision=True)
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in model.modules())
    assert any(isinstance(m, AxisWiseInstanceNorm) for m in model.modules())
    # Parameter-free norms: checkpoints written before the swap load unchanged.
    assert not any("norm" in key for key in model.state_dict())
