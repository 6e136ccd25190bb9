"""The importer's ONNX parity rule: confident models pass, wrong exports are refused.

The rule (``training/nnunet/parity.py``) bounds each output channel's difference by
``1e-4 + 1e-4 x`` the channel's largest |logit| and asks for the same labels wherever torch's
top-two margin exceeds the bound. The network cases use the CT model nnU-Net trained on phantoms
(conftest.py), as trained and with its segmentation layers scaled x100 (logits of several
thousand, as a learning rate of 0.1 gives): the per-logit rule this replaces refused the scaled
one, and each wrong export below must be refused at either scale.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.errors import ModelBundleError
from training.nnunet.importer import ImportOptions, import_model
from training.nnunet.parity import PARITY_ATOL, PARITY_RTOL, compare_logits

from .conftest import ReferenceModels

SEG_SCALE = 100.0


def _logits(shape: tuple[int, ...], scale: float, seed: int = 0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# --- the rule on arrays ---------------------------------------------------------------------


def test_error_is_bounded_by_the_channels_scale_not_by_each_logit() -> None:
    expected = _logits((2, 3, 4, 4, 4), 1000.0)
    expected[0, 1, 0, 0, 0] = 0.01  # a logit crossing zero among logits of ~±1000
    got = expected.copy()
    got[0, 1, 0, 0, 0] += 1e-3  # float32 rounding of ~1000-sized terms
    assert abs(1e-3) > PARITY_ATOL + PARITY_RTOL * 0.01  # what the per-logit rule refused
    report = compare_logits(expected, got)
    assert report.accepted, report.problem
    assert report.channel == 1 and report.bound == pytest.approx(
        PARITY_ATOL + PARITY_RTOL * np.abs(expected[:, 1]).max()
    )


def test_each_channel_has_its_own_scale() -> None:
    expected = _logits((2, 2, 4, 4, 4), 1000.0)
    expected[:, 1] /= 1000.0  # a channel of logits near ±1
    got = expected.copy()
    got[1, 1, 2, 2, 2] += 0.01  # small beside channel 0's scale, large for channel 1's
    report = compare_logits(expected, got)
    assert report.problem is not None and "output channel 1" in report.problem


def test_labels_must_agree_where_the_margin_exceeds_the_bound() -> None:
    # Two voxels, two channels of scale ~10: every bound is ~1.1e-3.
    expected = np.full((1, 2, 2, 1, 1), 10.0, np.float32)
    expected[0, 1, 0] = 10.0 - 4e-4  # a near tie: margin 4e-4, below the bound
    expected[0, 1, 1] = 10.0 + 1.5e-3  # margin 1.5e-3, above the bound
    got = expected.copy()
    got[0, 1, 0] = 10.0 + 2e-4  # moved by 6e-4: the label flips at the near tie
    assert compare_logits(expected, got).accepted
    got[0, 0, 1] = 10.0 + 8e-4  # both logits moved by 8e-4, each within the bound,
    got[0, 1, 1] = 10.0 + 7e-4  # but the label flips where the margin exceeded it
    report = compare_logits(expected, got)
    assert report.channel_difference < report.bound
    assert report.problem is not None and "labels (argmax over the channels)" in report.problem
    assert report.label_mismatches == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda got: got.__setitem__((0, 0, 0, 0, 0), np.nan), "1 non-finite logit"),
        (lambda got: got.__setitem__((1, 1, 1, 1, 1), np.inf), "1 non-finite logit"),
    ],
)
def test_non_finite_onnx_logits_are_refused(
    edit: Callable[[np.ndarray], None], message: str
) -> None:
    expected = _logits((2, 2, 2, 2, 2), 5.0)
    got = expected.copy()
    edit(got)
    report = compare_logits(expected, got)
    assert report.problem is not None and message in report.problem


def test_non_finite_torch_logits_and_other_shapes_are_refused() -> None:
    expected = _logits((2, 2, 2, 2, 2), 5.0)
    broken = expected.copy()
    broken[0, 0, 0, 0, 0] = np.nan
    assert "torch itself gives non-finite" in str(compare_logits(broken, expected).problem)
    assert "ONNX output shape" in str(compare_logits(expected, expected[:, :1]).problem)


# --- nnU-Net's network, exported ------------------------------------------------------------


def _fold_network(folder: Path, scale: float = 1.0) -> tuple[object, Path]:
    """Fold 0's network of ``folder`` (segmentation layers x ``scale``) and its checkpoint."""
    import torch

    from training.nnunet.folder import CheckpointChoice, open_model_folder
    from training.nnunet.network import build_network, load_checkpoint

    opened = open_model_folder(folder, None, (0,), CheckpointChoice.FINAL)
    path = opened.checkpoints[0]
    network = build_network(
        opened.plans, opened.plans_path, opened.dataset, opened.configuration, load_checkpoint(path)
    )
    with torch.no_grad():
        for layer in network.decoder.seg_layers:  # type: ignore[union-attr]
            layer.weight.mul_(scale)
            layer.bias.mul_(scale)
    return network, path


def _scaled_folder(source: Path, root: Path, scale: float) -> Path:
    """A copy of ``source`` whose fold 0 has its segmentation layers' weights x ``scale``."""
    import torch

    target = root / source.parent.name / source.name
    shutil.copytree(source, target)
    path = target / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    for key, value in checkpoint["network_weights"].items():
        if ".seg_layers." in key:
            checkpoint["network_weights"][key] = value * scale
    torch.save(checkpoint, path)
    return target


PATCH = (16, 24, 24)


def test_large_logit_model_is_imported(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    from training.export import torch_and_onnx_outputs
    from training.nnunet.network import INPUT_NAME, export_onnx

    folder = _scaled_folder(nnunet_models.ct, tmp_path / "scaled", SEG_SCALE)
    network, _ = _fold_network(folder)
    data = export_onnx(network, 1, PATCH)  # type: ignore[arg-type]
    expected, got = torch_and_onnx_outputs(network, data, 1, PATCH, input_name=INPUT_NAME)  # type: ignore[arg-type]
    assert np.abs(expected).max() > 1000.0
    per_logit = np.abs(got - expected) > PARITY_ATOL + PARITY_RTOL * np.abs(expected)
    assert per_logit.any(), "the per-logit rule would accept this export: not the case tested"
    out = import_model([folder], tmp_path / "bundle", ImportOptions(folds=(0,)))
    assert (out / "manifest.json").is_file()


def _initializer(model: object, name: str, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    from onnx import numpy_helper

    for index, init in enumerate(model.graph.initializer):  # type: ignore[attr-defined]
        if init.name == name:
            array = edit(numpy_helper.to_array(init).copy())
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, name))  # type: ignore[attr-defined]
            return
    raise AssertionError(f"no initializer {name}")


def _flip_largest_first_weight(model: object) -> None:
    def flip(array: np.ndarray) -> np.ndarray:
        index = int(np.argmax(np.abs(array)))
        array.flat[index] = -array.flat[index]
        return array

    _initializer(model, "encoder.stages.0.0.convs.0.conv.weight", flip)


def _float16_weights(model: object) -> None:
    for init in list(model.graph.initializer):  # type: ignore[attr-defined]
        if init.data_type == 1:  # float32
            _initializer(model, init.name, lambda a: a.astype(np.float16).astype(np.float32))


def _nan_weight(model: object) -> None:
    def poison(array: np.ndarray) -> np.ndarray:
        array.flat[0] = np.nan
        return array

    _initializer(model, "decoder.stages.0.convs.0.conv.weight", poison)


def _attribute(op: str, name: str, value: float, first_only: bool = False) -> Callable[..., None]:
    def edit(model: object) -> None:
        for node in model.graph.node:  # type: ignore[attr-defined]
            if node.op_type == op:
                next(a for a in node.attribute if a.name == name).f = value
                if first_only:
                    return

    return edit


def _norm_epsilon(value: float) -> Callable[[object], None]:
    """Every instance norm's epsilon (the constant added to the variance under ``Sqrt``)."""

    def edit(model: object) -> None:
        from onnx import numpy_helper

        graph = model.graph  # type: ignore[attr-defined]
        producers = {output: node for node in graph.node for output in node.output}
        edited = 0
        for sqrt in (n for n in graph.node if n.op_type == "Sqrt"):
            add = producers[sqrt.input[0]]
            assert add.op_type == "Add", add.op_type
            constant = next(producers[i] for i in add.input if i in producers and
                            producers[i].op_type == "Constant")  # fmt: skip
            tensor = constant.attribute[0].t
            eps = numpy_helper.to_array(tensor)
            assert eps.size == 1 and 0 < float(eps) < 1e-3, eps
            tensor.CopyFrom(numpy_helper.from_array(np.full_like(eps, value), tensor.name))
            edited += 1
        assert edited, "no instance norm epsilon found in the graph"

    return edit


def _drop_last_activation(model: object) -> None:
    graph = model.graph  # type: ignore[attr-defined]
    node = [n for n in graph.node if n.op_type == "LeakyRelu"][-1]
    for other in graph.node:
        for index, name in enumerate(other.input):
            if name == node.output[0]:
                other.input[index] = node.input[0]
    graph.node.remove(node)


WRONG_EXPORTS: dict[str, Callable[[object], None]] = {
    "weight: largest first-layer weight's sign flipped": _flip_largest_first_weight,
    "weight: every weight stored as float16": _float16_weights,
    "weight: one NaN": _nan_weight,
    "operator: ReLU for LeakyReLU": _attribute("LeakyRelu", "alpha", 0.0),
    "operator: LeakyReLU slope 0.02 in the first stage": _attribute(
        "LeakyRelu", "alpha", 0.02, first_only=True
    ),
    "operator: instance norm epsilon 1e-2": _norm_epsilon(1e-2),
    "graph: last activation dropped": _drop_last_activation,
}


@pytest.mark.parametrize("scale", [1.0, SEG_SCALE], ids=["as-trained", "logits-x100"])
def test_wrong_exports_are_refused_naming_fold_error_and_bound(
    nnunet_models: ReferenceModels, scale: float
) -> None:
    import onnx

    from training.nnunet.network import check_parity, export_onnx

    network, path = _fold_network(nnunet_models.ct, scale)
    data = export_onnx(network, 1, PATCH)  # type: ignore[arg-type]
    report = check_parity(network, data, 1, PATCH, path)  # type: ignore[arg-type]
    assert report.accepted and report.channel_difference < report.bound / 10
    for what, corrupt in WRONG_EXPORTS.items():
        model = copy.deepcopy(onnx.load_from_string(data))
        corrupt(model)
        with pytest.raises(ModelBundleError) as refused:
            check_parity(network, model.SerializeToString(), 1, PATCH, path)  # type: ignore[arg-type]
        message = str(refused.value)
        assert message.startswith(f"{path}: "), (what, message)
        if "NaN" in what:
            assert "non-finite" in message, (what, message)
            continue
        found = re.search(r"differs from torch by up to (\S+) .* bound (\S+) = ", message)
        labels = "labels (argmax over the channels) differ" in message
        assert found or labels, (what, message)
        if found:
            assert float(found.group(1)) > float(found.group(2)), (what, message)
