"""nnU-Net v2's inference recipe, as a bundle manifest's ``nnunet`` block carries it.

The block is written by ``fedseg import nnunet`` (``training/nnunet/``) from a trained nnU-Net
folder (plans, dataset.json, checkpoints, postprocessing.json) and read here; the contract between
the two is ``/work/helpers/NNUNET_RECIPE.md`` (recipe_version 1). Every class validates on
construction and :meth:`NnunetRecipe.from_dict` refuses unknown and missing fields, naming the
field's path (``nnunet.models[0].normalisation[0].scheme``), so a typo in a manifest fails at
load instead of running a different recipe.

Fields beyond the contract (documented here, as the contract asks):

- none so far.

Limits of this reader: 3D configurations only (a ``patch_size`` of three entries); a cascade
stage (``3d_cascade_fullres``) is refused, since it needs the low-resolution stage's
segmentation as an extra input channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

RECIPE_VERSION = 1

T = TypeVar("T")


class RecipeError(ValueError):
    """A manifest's ``nnunet`` block is malformed; the message names the field."""


class NormalisationScheme(StrEnum):
    """nnU-Net's intensity normalisation schemes (``default_normalization_schemes.py``)."""

    CT = "CTNormalization"
    ZSCORE = "ZScoreNormalization"
    NONE = "NoNormalization"
    RESCALE_01 = "RescaleTo01Normalization"


class PostprocessingFunction(StrEnum):
    """The functions of ``postprocessing.json`` the service can apply."""

    LARGEST_COMPONENT = "remove_all_but_largest_component_from_segmentation"


# --- field readers -------------------------------------------------------------------------


def _check_keys(
    data: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()
) -> None:
    if not isinstance(data, Mapping):
        raise RecipeError(f"{where}: expected an object, got {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise RecipeError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise RecipeError(
            f"{where}: unknown field(s) {', '.join(unknown)} (recipe_version {RECIPE_VERSION} "
            "knows " + ", ".join([*required, *optional]) + ")"
        )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecipeError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecipeError(f"{where}: expected an integer, got {value!r}")
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RecipeError(f"{where}: expected true or false, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _items(value: Any, where: str, read: Callable[[Any, str], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise RecipeError(f"{where}: expected a list, got {type(value).__name__}")
    return tuple(read(item, f"{where}[{i}]") for i, item in enumerate(value))


def _triple_int(value: Any, where: str) -> tuple[int, int, int]:
    items = _items(value, where, _integer)
    if len(items) != 3:
        raise RecipeError(f"{where}: expected 3 entries (a 3D configuration), got {len(items)}")
    return (items[0], items[1], items[2])


def _triple_float(value: Any, where: str) -> tuple[float, float, float]:
    items = _items(value, where, _number)
    if len(items) != 3:
        raise RecipeError(f"{where}: expected 3 entries (a 3D configuration), got {len(items)}")
    return (items[0], items[1], items[2])


def _enum(kind: type[Any], value: Any, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(item.value for item in kind)
        raise RecipeError(f"{where}: {value!r} is not supported (known: {known})") from None


def _fail(where: str, message: str) -> RecipeError:
    return RecipeError(f"{where}: {message}")


# --- the recipe ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    """One input channel of the network: a series of the study (channel 0 gives the grid)."""

    name: str
    modality: str

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Channel:
        """Read ``{"name", "modality"}``."""
        _check_keys(data, where, ("name", "modality"))
        return cls(
            _text(data["name"], f"{where}.name"), _text(data["modality"], f"{where}.modality")
        )


@dataclass(frozen=True)
class ChannelNormalisation:
    """One channel's normalisation, with the fingerprint statistics CTNormalization needs."""

    scheme: NormalisationScheme
    use_mask_for_norm: bool = False
    mean: float | None = None
    std: float | None = None
    percentile_00_5: float | None = None
    percentile_99_5: float | None = None

    def __post_init__(self) -> None:
        stats = (self.mean, self.std, self.percentile_00_5, self.percentile_99_5)
        if self.scheme is NormalisationScheme.CT:
            if any(v is None for v in stats):
                raise RecipeError(
                    "CTNormalization needs mean, std, percentile_00_5 and percentile_99_5"
                )
            assert self.percentile_00_5 is not None and self.percentile_99_5 is not None
            if self.percentile_00_5 > self.percentile_99_5:
                raise RecipeError("CTNormalization: percentile_00_5 exceeds percentile_99_5")

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ChannelNormalisation:
        """Read one entry of ``normalisation``."""
        stats = ("mean", "std", "percentile_00_5", "percentile_99_5")
        _check_keys(data, where, ("scheme",), ("use_mask_for_norm", *stats))
        values = {k: _number(data[k], f"{where}.{k}") for k in stats if k in data}
        try:
            return cls(
                scheme=_enum(NormalisationScheme, data["scheme"], f"{where}.scheme"),
                use_mask_for_norm=_boolean(
                    data.get("use_mask_for_norm", False), f"{where}.use_mask_for_norm"
                ),
                **values,
            )
        except RecipeError as exc:
            if str(exc).startswith(where):
                raise
            raise _fail(where, str(exc)) from None


@dataclass(frozen=True)
class Resampling:
    """``resample_data_or_seg_to_shape``'s settings (nnU-Net's default resampling)."""

    order: int
    order_z: int = 0
    force_separate_z: bool | None = None
    separate_z_anisotropy_threshold: float = 3.0

    def __post_init__(self) -> None:
        if not 0 <= self.order <= 5 or not 0 <= self.order_z <= 5:
            raise RecipeError(f"order and order_z must be 0-5, got {self.order}, {self.order_z}")
        if not self.separate_z_anisotropy_threshold > 0:
            raise RecipeError("separate_z_anisotropy_threshold must be positive")

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Resampling:
        """Read ``resampling_data`` or ``resampling_logits``."""
        _check_keys(
            data,
            where,
            ("order",),
            ("order_z", "force_separate_z", "separate_z_anisotropy_threshold"),
        )
        force = data.get("force_separate_z")
        try:
            return cls(
                order=_integer(data["order"], f"{where}.order"),
                order_z=_integer(data.get("order_z", 0), f"{where}.order_z"),
                force_separate_z=None
                if force is None
                else _boolean(force, f"{where}.force_separate_z"),
                separate_z_anisotropy_threshold=_number(
                    data.get("separate_z_anisotropy_threshold", 3.0),
                    f"{where}.separate_z_anisotropy_threshold",
                ),
            )
        except RecipeError as exc:
            if str(exc).startswith(where):
                raise
            raise _fail(where, str(exc)) from None


@dataclass(frozen=True)
class PostprocessingStep:
    """One entry of ``postprocessing.json``: a largest-component rule on labels or regions."""

    function: PostprocessingFunction
    labels_or_regions: tuple[int | tuple[int, ...], ...]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> PostprocessingStep:
        """Read ``{"function", "kwargs": {"labels_or_regions"}}``."""
        _check_keys(data, where, ("function", "kwargs"))
        function = _enum(PostprocessingFunction, data["function"], f"{where}.function")
        kwargs = data["kwargs"]
        _check_keys(kwargs, f"{where}.kwargs", ("labels_or_regions",))
        raw = kwargs["labels_or_regions"]
        raw = raw if isinstance(raw, list) else [raw]  # nnU-Net accepts one label or region

        def one(item: Any, at: str) -> int | tuple[int, ...]:
            if isinstance(item, list):
                return _items(item, at, _integer)
            return _integer(item, at)

        targets = tuple(
            one(item, f"{where}.kwargs.labels_or_regions[{i}]") for i, item in enumerate(raw)
        )
        return cls(function=function, labels_or_regions=targets)


@dataclass(frozen=True)
class Fold:
    """One fold's ONNX network (path relative to the bundle folder) and its sources."""

    fold: int
    onnx: str
    onnx_sha256: str
    checkpoint: str
    checkpoint_sha256: str

    def __post_init__(self) -> None:
        parts = self.onnx.replace("\\", "/").split("/")
        if self.onnx.startswith("/") or ".." in parts or not self.onnx.endswith(".onnx"):
            raise RecipeError(
                f"onnx {self.onnx!r} must be a relative path inside the bundle ending in .onnx"
            )
        for name, digest in (
            ("onnx_sha256", self.onnx_sha256),
            ("checkpoint_sha256", self.checkpoint_sha256),
        ):
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise RecipeError(f"{name} must be 64 lowercase hex digits, got {digest!r}")

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Fold:
        """Read one entry of ``folds``."""
        _check_keys(data, where, ("fold", "onnx", "onnx_sha256", "checkpoint", "checkpoint_sha256"))
        try:
            return cls(
                fold=_integer(data["fold"], f"{where}.fold"),
                onnx=_text(data["onnx"], f"{where}.onnx"),
                onnx_sha256=_text(data["onnx_sha256"], f"{where}.onnx_sha256"),
                checkpoint=_text(data["checkpoint"], f"{where}.checkpoint"),
                checkpoint_sha256=_text(data["checkpoint_sha256"], f"{where}.checkpoint_sha256"),
            )
        except RecipeError as exc:
            if str(exc).startswith(where):
                raise
            raise _fail(where, str(exc)) from None


@dataclass(frozen=True)
class NnunetProvenance:
    """Which nnU-Net produced the model and the hashes of its plans and dataset.json."""

    nnunetv2: str
    plans_sha256: str
    dataset_json_sha256: str
    old_format_plans: bool = False

    @classmethod
    def from_dict(cls, data: Any, where: str) -> NnunetProvenance:
        """Read ``provenance``."""
        _check_keys(
            data, where, ("nnunetv2", "plans_sha256", "dataset_json_sha256"), ("old_format_plans",)
        )
        return cls(
            nnunetv2=_text(data["nnunetv2"], f"{where}.nnunetv2"),
            plans_sha256=_text(data["plans_sha256"], f"{where}.plans_sha256"),
            dataset_json_sha256=_text(data["dataset_json_sha256"], f"{where}.dataset_json_sha256"),
            old_format_plans=_boolean(
                data.get("old_format_plans", False), f"{where}.old_format_plans"
            ),
        )


_MODEL_FIELDS = (
    "name",
    "configuration",
    "trainer",
    "plans_name",
    "transpose_forward",
    "transpose_backward",
    "spacing",
    "crop_to_nonzero",
    "normalisation",
    "resampling_data",
    "resampling_logits",
    "patch_size",
    "tile_step_size",
    "gaussian",
    "gaussian_sigma_scale",
    "gaussian_value_scaling_factor",
    "mirror_axes",
    "labels",
    "regions_class_order",
    "ignore_label",
    "label_map",
    "postprocessing",
    "folds",
    "provenance",
)


@dataclass(frozen=True)
class NnunetModel:
    """One trained nnU-Net configuration: how to prepare input, run its folds, read labels.

    ``spacing`` and ``patch_size`` are in the transposed (network) axis order, as in the plans.
    ``labels`` is dataset.json's ``labels`` verbatim (a region model maps names to lists);
    ``label_map`` maps nnU-Net label values to the bundle's label numbers.
    """

    name: str
    configuration: str
    trainer: str
    plans_name: str
    transpose_forward: tuple[int, int, int]
    transpose_backward: tuple[int, int, int]
    spacing: tuple[float, float, float]
    crop_to_nonzero: bool
    normalisation: tuple[ChannelNormalisation, ...]
    resampling_data: Resampling
    resampling_logits: Resampling
    patch_size: tuple[int, int, int]
    tile_step_size: float
    gaussian: bool
    gaussian_sigma_scale: float
    gaussian_value_scaling_factor: float
    mirror_axes: tuple[int, ...]
    labels: Mapping[str, int | tuple[int, ...]]
    regions_class_order: tuple[int, ...] | None
    ignore_label: int | None
    label_map: Mapping[int, int]
    postprocessing: tuple[PostprocessingStep, ...]
    folds: tuple[Fold, ...]
    provenance: NnunetProvenance

    def __post_init__(self) -> None:
        if "cascade" in self.configuration:
            raise RecipeError(
                f"configuration {self.configuration!r} is a cascade stage, which needs the "
                "low-resolution stage's segmentation as input; import 3d_fullres or 3d_lowres"
            )
        for name, perm in (
            ("transpose_forward", self.transpose_forward),
            ("transpose_backward", self.transpose_backward),
        ):
            if sorted(perm) != [0, 1, 2]:
                raise RecipeError(f"{name} {list(perm)} is not a permutation of 0, 1, 2")
        if tuple(self.transpose_forward[i] for i in self.transpose_backward) != (0, 1, 2):
            raise RecipeError("transpose_backward is not the inverse of transpose_forward")
        if any(s <= 0 for s in self.spacing):
            raise RecipeError(f"spacing must be positive, got {list(self.spacing)}")
        if any(p < 1 for p in self.patch_size):
            raise RecipeError(f"patch_size must be positive, got {list(self.patch_size)}")
        if not self.normalisation:
            raise RecipeError("normalisation needs one entry per input channel")
        if not 0 < self.tile_step_size <= 1:
            raise RecipeError(f"tile_step_size must be in (0, 1], got {self.tile_step_size}")
        if not self.gaussian_sigma_scale > 0 or not self.gaussian_value_scaling_factor > 0:
            raise RecipeError(
                "gaussian_sigma_scale and gaussian_value_scaling_factor must be positive"
            )
        if any(a not in (0, 1, 2) for a in self.mirror_axes) or len(set(self.mirror_axes)) != len(
            self.mirror_axes
        ):
            raise RecipeError(
                f"mirror_axes must be distinct axes 0-2, got {list(self.mirror_axes)}"
            )
        if not self.folds:
            raise RecipeError("folds is empty: a model needs at least one fold's network")
        if len({f.fold for f in self.folds}) != len(self.folds):
            raise RecipeError("folds lists a fold twice")
        values = self.output_values
        if self.regions_class_order is not None:
            if len(self.regions_class_order) != self.num_outputs:
                raise RecipeError(
                    f"regions_class_order has {len(self.regions_class_order)} entries for "
                    f"{self.num_outputs} regions in labels"
                )
        elif values != list(range(len(values))):
            raise RecipeError(f"labels must be 0..K-1 without gaps (nnU-Net's rule), got {values}")
        producible = set(self.regions_class_order or values)
        for value, number in self.label_map.items():
            if value not in producible or value == 0:
                raise RecipeError(f"label_map maps {value}, which the model never outputs")
            if number < 1:
                raise RecipeError(f"label_map maps {value} to {number}; bundle labels start at 1")

    @property
    def output_values(self) -> list[int]:
        """The label values of the network outputs (softmax), sorted; ignore label excluded."""
        values = sorted(
            v for v in self.labels.values() if isinstance(v, int) and v != self.ignore_label
        )
        return values

    @property
    def has_regions(self) -> bool:
        """Whether the model was trained on regions (sigmoid outputs)."""
        return self.regions_class_order is not None

    @property
    def num_outputs(self) -> int:
        """Network output channels: one per class (softmax) or per region (sigmoid)."""
        if self.has_regions:
            return sum(
                1 for k, v in self.labels.items() if k != "background" and v != self.ignore_label
            )
        return len(self.output_values)

    @property
    def num_channels(self) -> int:
        """Input channels of the network."""
        return len(self.normalisation)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> NnunetModel:
        """Read one entry of ``nnunet.models``."""
        _check_keys(data, where, _MODEL_FIELDS)
        at = {k: f"{where}.{k}" for k in _MODEL_FIELDS}
        order = data["regions_class_order"]
        ignore = data["ignore_label"]
        try:
            return cls(
                name=_text(data["name"], at["name"]),
                configuration=_text(data["configuration"], at["configuration"]),
                trainer=_text(data["trainer"], at["trainer"]),
                plans_name=_text(data["plans_name"], at["plans_name"]),
                transpose_forward=_triple_int(data["transpose_forward"], at["transpose_forward"]),
                transpose_backward=_triple_int(
                    data["transpose_backward"], at["transpose_backward"]
                ),
                spacing=_triple_float(data["spacing"], at["spacing"]),
                crop_to_nonzero=_boolean(data["crop_to_nonzero"], at["crop_to_nonzero"]),
                normalisation=_items(
                    data["normalisation"], at["normalisation"], ChannelNormalisation.from_dict
                ),
                resampling_data=Resampling.from_dict(
                    data["resampling_data"], at["resampling_data"]
                ),
                resampling_logits=Resampling.from_dict(
                    data["resampling_logits"], at["resampling_logits"]
                ),
                patch_size=_triple_int(data["patch_size"], at["patch_size"]),
                tile_step_size=_number(data["tile_step_size"], at["tile_step_size"]),
                gaussian=_boolean(data["gaussian"], at["gaussian"]),
                gaussian_sigma_scale=_number(
                    data["gaussian_sigma_scale"], at["gaussian_sigma_scale"]
                ),
                gaussian_value_scaling_factor=_number(
                    data["gaussian_value_scaling_factor"], at["gaussian_value_scaling_factor"]
                ),
                mirror_axes=_items(data["mirror_axes"], at["mirror_axes"], _integer),
                labels=_labels(data["labels"], at["labels"]),
                regions_class_order=None
                if order is None
                else _items(order, at["regions_class_order"], _integer),
                ignore_label=None if ignore is None else _integer(ignore, at["ignore_label"]),
                label_map=_label_map(data["label_map"], at["label_map"]),
                postprocessing=_items(
                    data["postprocessing"], at["postprocessing"], PostprocessingStep.from_dict
                ),
                folds=_items(data["folds"], at["folds"], Fold.from_dict),
                provenance=NnunetProvenance.from_dict(data["provenance"], at["provenance"]),
            )
        except RecipeError as exc:
            if str(exc).startswith(where):
                raise
            raise _fail(where, str(exc)) from None


def _labels(data: Any, where: str) -> dict[str, int | tuple[int, ...]]:
    if not isinstance(data, Mapping) or not data:
        raise RecipeError(f"{where}: expected dataset.json's labels object")
    out: dict[str, int | tuple[int, ...]] = {}
    for name, value in data.items():
        at = f"{where}.{name}"
        out[name] = _items(value, at, _integer) if isinstance(value, list) else _integer(value, at)
    if out.get("background") not in (0, (0,)):
        raise RecipeError(f"{where}: background must be label 0 (nnU-Net's rule)")
    return out


def _label_map(data: Any, where: str) -> dict[int, int]:
    if not isinstance(data, Mapping):
        raise RecipeError(f"{where}: expected an object of nnU-Net value -> bundle label number")
    out: dict[int, int] = {}
    for key, value in data.items():
        if not str(key).isdigit():
            raise RecipeError(f"{where}: key {key!r} is not an nnU-Net label value")
        out[int(key)] = _integer(value, f"{where}.{key}")
    return out


@dataclass(frozen=True)
class NnunetRecipe:
    """The ``nnunet`` block: input channels and the models whose label maps are merged."""

    channels: tuple[Channel, ...]
    models: tuple[NnunetModel, ...]
    recipe_version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        if self.recipe_version != RECIPE_VERSION:
            raise RecipeError(
                f"nnunet.recipe_version {self.recipe_version} is not supported (this fedseg reads "
                f"{RECIPE_VERSION}); update fedseg or re-import the model"
            )
        if not self.channels:
            raise RecipeError("nnunet.channels is empty: a model needs at least one input")
        if not self.models:
            raise RecipeError("nnunet.models is empty")
        for i, model in enumerate(self.models):
            if model.num_channels != len(self.channels):
                raise RecipeError(
                    f"nnunet.models[{i}].normalisation has {model.num_channels} entries for "
                    f"{len(self.channels)} channels"
                )

    @property
    def label_numbers(self) -> set[int]:
        """Every bundle label number some model's label_map produces."""
        return {n for model in self.models for n in model.label_map.values()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "nnunet") -> NnunetRecipe:
        """Read the manifest's ``nnunet`` block.

        Raises
        ------
        RecipeError
            For a missing, unknown or invalid field; the message names it.
        """
        _check_keys(data, where, ("recipe_version", "channels", "models"))
        version = _integer(data["recipe_version"], f"{where}.recipe_version")
        if version != RECIPE_VERSION:
            raise RecipeError(
                f"{where}.recipe_version: {version} is not supported (this fedseg reads "
                f"{RECIPE_VERSION}); update fedseg or re-import the model"
            )
        try:
            return cls(
                channels=_items(data["channels"], f"{where}.channels", Channel.from_dict),
                models=_items(data["models"], f"{where}.models", NnunetModel.from_dict),
                recipe_version=version,
            )
        except RecipeError as exc:
            if str(exc).startswith(where):
                raise
            raise _fail(where, str(exc)) from None

    def as_dict(self) -> dict[str, Any]:
        """The block as manifest JSON (the inverse of :meth:`from_dict`)."""
        return {
            "recipe_version": self.recipe_version,
            "channels": [{"name": c.name, "modality": c.modality} for c in self.channels],
            "models": [_model_dict(m) for m in self.models],
        }


def _model_dict(model: NnunetModel) -> dict[str, Any]:
    def norm(n: ChannelNormalisation) -> dict[str, Any]:
        out: dict[str, Any] = {"scheme": n.scheme.value, "use_mask_for_norm": n.use_mask_for_norm}
        for key in ("mean", "std", "percentile_00_5", "percentile_99_5"):
            if getattr(n, key) is not None:
                out[key] = getattr(n, key)
        return out

    def resampling(r: Resampling) -> dict[str, Any]:
        return {
            "order": r.order,
            "order_z": r.order_z,
            "force_separate_z": r.force_separate_z,
            "separate_z_anisotropy_threshold": r.separate_z_anisotropy_threshold,
        }

    def listed(value: int | tuple[int, ...]) -> int | list[int]:
        return list(value) if isinstance(value, tuple) else value

    return {
        "name": model.name,
        "configuration": model.configuration,
        "trainer": model.trainer,
        "plans_name": model.plans_name,
        "transpose_forward": list(model.transpose_forward),
        "transpose_backward": list(model.transpose_backward),
        "spacing": list(model.spacing),
        "crop_to_nonzero": model.crop_to_nonzero,
        "normalisation": [norm(n) for n in model.normalisation],
        "resampling_data": resampling(model.resampling_data),
        "resampling_logits": resampling(model.resampling_logits),
        "patch_size": list(model.patch_size),
        "tile_step_size": model.tile_step_size,
        "gaussian": model.gaussian,
        "gaussian_sigma_scale": model.gaussian_sigma_scale,
        "gaussian_value_scaling_factor": model.gaussian_value_scaling_factor,
        "mirror_axes": list(model.mirror_axes),
        "labels": {k: listed(v) for k, v in model.labels.items()},
        "regions_class_order": None
        if model.regions_class_order is None
        else list(model.regions_class_order),
        "ignore_label": model.ignore_label,
        "label_map": {str(k): v for k, v in model.label_map.items()},
        "postprocessing": [
            {
                "function": step.function.value,
                "kwargs": {"labels_or_regions": [listed(t) for t in step.labels_or_regions]},
            }
            for step in model.postprocessing
        ],
        "folds": [
            {
                "fold": f.fold,
                "onnx": f.onnx,
                "onnx_sha256": f.onnx_sha256,
                "checkpoint": f.checkpoint,
                "checkpoint_sha256": f.checkpoint_sha256,
            }
            for f in model.folds
        ],
        "provenance": {
            "nnunetv2": model.provenance.nnunetv2,
            "plans_sha256": model.provenance.plans_sha256,
            "dataset_json_sha256": model.provenance.dataset_json_sha256,
            "old_format_plans": model.provenance.old_format_plans,
        },
    }
