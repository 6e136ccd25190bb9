"""nnU-Net's inference recipe read from a model folder, as the manifest's ``nnunet.models[i]``.

Every value comes from the folder (plans, dataset.json, the checkpoint, postprocessing.json)
or is a default of ``nnUNetPredictor`` (tile step 0.5, Gaussian weighting with sigma 1/8 of the
patch and value scaling 10). The service's reader (``service/inference/nnunet/recipe.py``)
validates the result; the contract is ``NNUNET_RECIPE.md`` (recipe_version 1), summarised in
``docs/models.md``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from service.errors import ModelBundleError
from training.nnunet.folder import ModelFolder

#: nnU-Net's normalisation schemes the service implements (default_normalization_schemes.py).
KNOWN_SCHEMES = (
    "CTNormalization",
    "ZScoreNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
)
RESAMPLING_FUNCTION = "resample_data_or_seg_to_shape"
PREPROCESSOR = "DefaultPreprocessor"
#: nnUNetPredictor's defaults (predict_from_raw_data.py, compute_gaussian).
TILE_STEP_SIZE = 0.5
GAUSSIAN_SIGMA_SCALE = 1.0 / 8
GAUSSIAN_VALUE_SCALING_FACTOR = 10.0
#: nnunetv2.configuration.ANISO_THRESHOLD, the separate-z rule of the default resampling.
ANISO_THRESHOLD = 3.0


def configuration_dict(folder: ModelFolder) -> dict[str, Any]:
    """The configuration's plans entry with ``inherits_from`` resolved (old format kept)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(copy.deepcopy(folder.plans))
    try:
        return dict(manager._internal_resolve_configuration_inheritance(folder.configuration))
    except (KeyError, ValueError) as exc:
        raise ModelBundleError(
            f"{folder.plans_path}: configurations.{folder.configuration}: {exc}"
        ) from exc


def _field(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ModelBundleError(f"{where}: no {key!r} field")
    return data[key]


def _normalisation(folder: ModelFolder, config: dict[str, Any]) -> list[dict[str, Any]]:
    where = f"{folder.plans_path}: configurations.{folder.configuration}"
    schemes = _field(config, "normalization_schemes", where)
    masks = _field(config, "use_mask_for_norm", where)
    intensity = folder.plans.get("foreground_intensity_properties_per_channel") or folder.plans.get(
        "foreground_intensity_properties_by_modality", {}
    )
    out = []
    for channel, scheme in enumerate(schemes):
        if scheme not in KNOWN_SCHEMES:
            raise ModelBundleError(
                f"{where}.normalization_schemes[{channel}]: unknown normalisation scheme "
                f"{scheme!r} (fedseg runs {', '.join(KNOWN_SCHEMES)})"
            )
        entry: dict[str, Any] = {"scheme": scheme, "use_mask_for_norm": bool(masks[channel])}
        if scheme == "CTNormalization":
            stats = intensity.get(str(channel))
            if not isinstance(stats, dict):
                raise ModelBundleError(
                    f"{folder.plans_path}: foreground_intensity_properties_per_channel.{channel} "
                    "is missing; CTNormalization needs its mean, std and percentiles"
                )
            for key in ("mean", "std", "percentile_00_5", "percentile_99_5"):
                entry[key] = float(
                    _field(
                        stats,
                        key,
                        f"{folder.plans_path}: foreground_intensity_properties_"
                        f"per_channel.{channel}",
                    )
                )
        out.append(entry)
    return out


def _resampling(folder: ModelFolder, config: dict[str, Any], kind: str) -> dict[str, Any]:
    where = f"{folder.plans_path}: configurations.{folder.configuration}"
    function = config.get(f"resampling_fn_{kind}", RESAMPLING_FUNCTION)
    if function != RESAMPLING_FUNCTION:
        raise ModelBundleError(
            f"{where}.resampling_fn_{kind}: unknown resampling function {function!r} (fedseg "
            f"runs {RESAMPLING_FUNCTION})"
        )
    kwargs = _field(config, f"resampling_fn_{kind}_kwargs", where)
    return {
        "order": int(kwargs.get("order", 3 if kind == "data" else 1)),
        "order_z": int(kwargs.get("order_z", 0)),
        "force_separate_z": kwargs.get("force_separate_z"),
        "separate_z_anisotropy_threshold": float(
            kwargs.get("separate_z_anisotropy_threshold", ANISO_THRESHOLD)
        ),
    }


def _postprocessing(folder: ModelFolder) -> list[dict[str, Any]]:
    data = folder.postprocessing
    if data is None:
        return []
    functions = data.get("postprocessing_fns", [])
    kwargs = data.get("postprocessing_kwargs", [{}] * len(functions))
    if len(functions) != len(kwargs):
        raise ModelBundleError(
            f"{folder.postprocessing_path}: postprocessing_fns and postprocessing_kwargs differ "
            "in length"
        )
    return [{"function": f, "kwargs": dict(k)} for f, k in zip(functions, kwargs, strict=True)]


def ignore_label(dataset: dict[str, Any]) -> int | None:
    """nnU-Net's ignore label: the value of the label named ``ignore``, if any."""
    value = dataset["labels"].get("ignore")
    return int(value) if isinstance(value, int) else None


def model_recipe(
    folder: ModelFolder, trainer: str, mirror_axes: tuple[int, ...], label_map: dict[int, int]
) -> dict[str, Any]:
    """The manifest's ``nnunet.models[i]`` entry without ``folds`` and ``provenance``.

    ``trainer`` and ``mirror_axes`` are the checkpoints' ``trainer_name`` and
    ``inference_allowed_mirroring_axes``.

    Raises
    ------
    ModelBundleError
        For an unknown normalisation, resampling or preprocessor, naming the plans field.
    """
    config = configuration_dict(folder)
    where = f"{folder.plans_path}: configurations.{folder.configuration}"
    preprocessor = config.get("preprocessor_name", PREPROCESSOR)
    if preprocessor != PREPROCESSOR:
        raise ModelBundleError(
            f"{where}.preprocessor_name: unknown preprocessor {preprocessor!r} (fedseg runs "
            f"nnU-Net's {PREPROCESSOR})"
        )
    patch = [int(p) for p in _field(config, "patch_size", where)]
    if len(patch) != 3:
        raise ModelBundleError(
            f"{where}.patch_size: {patch} is not 3D; fedseg imports 3D configurations only"
        )
    forward = [int(a) for a in _field(folder.plans, "transpose_forward", str(folder.plans_path))]
    backward = [int(a) for a in _field(folder.plans, "transpose_backward", str(folder.plans_path))]
    order = folder.dataset.get("regions_class_order")
    return {
        "name": str(folder.plans.get("dataset_name") or folder.dataset.get("name") or "nnunet"),
        "configuration": folder.configuration,
        "trainer": trainer,
        "plans_name": str(folder.plans.get("plans_name", "nnUNetPlans")),
        "transpose_forward": forward,
        "transpose_backward": backward,
        "spacing": [float(s) for s in _field(config, "spacing", where)],
        "crop_to_nonzero": True,  # DefaultPreprocessor always crops to the non-zero box
        "normalisation": _normalisation(folder, config),
        "resampling_data": _resampling(folder, config, "data"),
        "resampling_logits": _resampling(folder, config, "probabilities"),
        "patch_size": patch,
        "tile_step_size": TILE_STEP_SIZE,
        "gaussian": True,
        "gaussian_sigma_scale": GAUSSIAN_SIGMA_SCALE,
        "gaussian_value_scaling_factor": GAUSSIAN_VALUE_SCALING_FACTOR,
        "mirror_axes": list(mirror_axes),
        "labels": folder.dataset["labels"],
        "regions_class_order": None if order is None else [int(v) for v in order],
        "ignore_label": ignore_label(folder.dataset),
        "label_map": {str(k): v for k, v in label_map.items()},
        "postprocessing": _postprocessing(folder),
    }


def is_old_format(config: dict[str, Any]) -> bool:
    """Whether a configuration is in the plans format before nnU-Net 2.4 (no ``architecture``)."""
    return "architecture" not in config


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (a manifest's file reference)."""
    return path.relative_to(root).as_posix()
