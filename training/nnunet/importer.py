"""``fedseg import nnunet``: trained nnU-Net v2 model folders as one fedseg bundle.

For each folder: read plans, dataset.json, the chosen folds' checkpoints and postprocessing.json
(:mod:`training.nnunet.folder`); rebuild each fold's network with nnU-Net's own code, without
deep supervision, and export it to ONNX, refusing an export that differs from torch
(:mod:`training.nnunet.network`); record the inference recipe (:mod:`training.nnunet.recipe`)
and name and code the labels (:mod:`training.nnunet.labels`). Several folders become one bundle
whose label maps are merged in order (TotalSegmentator's ``total`` is five models).

The bundle is written to a temporary folder next to ``out`` and renamed into place only when
every fold passed, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import platform
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle, sha256, write_checksums
from service.inference.manifest import label_dicts
from service.labels.registry import LabelTable
from service.qc.enum import BodyRegion
from service.qc.intended_use import IntendedUse, TrainingData, TrainingDataKind
from training.export import OPSET, git_commit
from training.nnunet.folder import CheckpointChoice, ModelFolder, open_model_folder
from training.nnunet.labels import BundleLabels, LabelCoder
from training.nnunet.network import (
    build_network,
    check_parity,
    export_onnx,
    load_checkpoint,
)
from training.nnunet.recipe import (
    configuration_dict,
    is_old_format,
    model_recipe,
)

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
RUNTIME = "nnunet-v2"
RECIPE_VERSION = 1
#: dataset.json channel names (upper case) → DICOM modality; nnU-Net's names are free text.
_MODALITIES = {
    "CT": "CT",
    "PET": "PT",
    "PT": "PT",
    "SUV": "PT",
    "MR": "MR",
    "MRI": "MR",
}
_MR_WORDS = re.compile(r"^(T1|T2|FLAIR|DWI|ADC|PD|T1C|T1CE|T1GD|T2W|T1W|DIXON|SWI|MR)")


@dataclass(frozen=True)
class ImportOptions:
    """What ``fedseg import nnunet`` is told beyond the folders.

    ``folds`` None imports every fold with the checkpoint; ``configuration`` None takes the one
    the folder's name says (``TRAINER__PLANS__CONFIGURATION``, else 3d_fullres).
    ``training_sites`` (a federated model's sites) makes the default intended use state real
    training data from those sites; they, ``federated_rounds``, ``validation_metrics`` (what the
    promotion gate compares) and ``notes`` go into the manifest's provenance.
    """

    folds: tuple[int, ...] | None = None
    checkpoint: CheckpointChoice = CheckpointChoice.FINAL
    configuration: str | None = None
    name: str | None = None
    version: str = "1.0.0"
    description: str = ""
    labels: LabelTable | None = None
    intended_use: IntendedUse | None = None
    training_sites: tuple[str, ...] = ()
    federated_rounds: int = 0
    validation_metrics: Mapping[str, float] = field(default_factory=dict)
    notes: str = ""


def channel_modality(name: str, where: str) -> str:
    """The DICOM modality of a dataset.json channel name ("CT", "T2", "PET", "MRI" ...).

    Raises
    ------
    ModelBundleError
        If the name says no modality; the intended-use file then has to.
    """
    key = name.strip().upper()
    if key in _MODALITIES:
        return _MODALITIES[key]
    if "CT" in re.split(r"[^A-Z0-9]+", key):
        return "CT"
    if _MR_WORDS.match(key):
        return "MR"
    raise ModelBundleError(
        f"{where}: channel name {name!r} names no modality fedseg knows (CT, PET, MR or an MR "
        "sequence); pass --intended-use with the modality"
    )


def _channels(folder: ModelFolder) -> list[tuple[str, str | None]]:
    names = folder.dataset.get("channel_names") or folder.dataset.get("modality") or {}
    where = f"{folder.dataset_path}: channel_names"
    out: list[tuple[str, str | None]] = []
    for index in range(len(names)):
        name = str(names.get(str(index), ""))
        if not name:
            raise ModelBundleError(f"{where}: no channel {index}")
        try:
            out.append((name, channel_modality(name, f"{where}.{index}")))
        except ModelBundleError:
            out.append((name, None))
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _export_folds(
    folder: ModelFolder, staging: Path, subfolder: str
) -> tuple[list[dict], str, tuple[int, ...]]:
    """Export each fold's ONNX into ``staging/subfolder``; returns folds, trainer, mirror axes."""
    folds: list[dict[str, Any]] = []
    trainer = ""
    mirror: tuple[int, ...] = ()
    recipe_patch = tuple(int(p) for p in configuration_dict(folder)["patch_size"])
    for fold, path in folder.checkpoints.items():
        checkpoint = load_checkpoint(path)
        if checkpoint.configuration != folder.configuration:
            raise ModelBundleError(
                f"{path}: init_args.configuration is {checkpoint.configuration!r}, but the "
                f"folder's is {folder.configuration!r}: the checkpoint belongs to another model"
            )
        if trainer and checkpoint.trainer_name != trainer:
            raise ModelBundleError(
                f"{path}: trainer_name {checkpoint.trainer_name!r} differs from fold "
                f"{next(iter(folder.checkpoints))}'s {trainer!r}"
            )
        if trainer and checkpoint.mirror_axes != mirror:
            raise ModelBundleError(
                f"{path}: inference_allowed_mirroring_axes {list(checkpoint.mirror_axes)} differ "
                f"from the other folds' {list(mirror)}"
            )
        trainer, mirror = checkpoint.trainer_name, checkpoint.mirror_axes
        network = build_network(
            folder.plans, folder.plans_path, folder.dataset, folder.configuration, checkpoint
        )
        channels = len(_channels(folder))
        data = export_onnx(network, channels, recipe_patch)
        report = check_parity(network, data, channels, recipe_patch, path)
        logger.info("%s: ONNX export matches torch (%s)", path, report.summary())
        target = staging / subfolder / f"fold_{fold}.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        folds.append(
            {
                "fold": fold,
                "onnx": f"{subfolder}/fold_{fold}.onnx",
                "onnx_sha256": _sha256(data),
                "checkpoint": f"fold_{fold}/{path.name}",
                "checkpoint_sha256": sha256(path),
            }
        )
    return folds, trainer, mirror


def _model_entry(
    folder: ModelFolder, staging: Path, subfolder: str, label_map: dict[int, int]
) -> dict[str, Any]:
    from importlib.metadata import version

    folds, trainer, mirror = _export_folds(folder, staging, subfolder)
    entry = model_recipe(folder, trainer, mirror, label_map)
    entry["folds"] = folds
    entry["provenance"] = {
        "nnunetv2": version("nnunetv2"),
        "plans_sha256": sha256(folder.plans_path),
        "dataset_json_sha256": sha256(folder.dataset_path),
        "old_format_plans": is_old_format(configuration_dict(folder)),
    }
    return entry


def default_intended_use(
    modality: str,
    folders: Sequence[ModelFolder],
    table: LabelTable,
    training_sites: Sequence[str] = (),
) -> IntendedUse:
    """Research use only, the labels' body regions (all if none known), training data unstated.

    With ``training_sites`` (a model trained by fedseg's federation) the training data are the
    sites' real cases, counted by the federation's ``dataset.json``.
    """
    regions = sorted({e.qc.region for e in table.labels if e.qc and e.qc.region})
    cases = [f.dataset.get("numTraining") for f in folders]
    if training_sites:
        total = cases[0] if len(cases) == 1 and isinstance(cases[0], int) else None
        return IntendedUse(
            statement="research use only; not for clinical use (nnU-Net trained by fedseg's "
            f"federation of {', '.join(training_sites)}; validated on the sites' held-out cases)",
            research_only=True,
            modality=modality,
            body_regions=regions or list(BodyRegion),
            training_data=TrainingData(
                kind=TrainingDataKind.REAL,
                cases=total,
                sources=[f"federated sites: {', '.join(training_sites)}"],
            ),
        )
    sources = [
        f"nnU-Net dataset {f.plans.get('dataset_name', f.path.name)} "
        f"({f.dataset.get('numTraining', 'unstated')} training cases per dataset.json)"
        for f in folders
    ]
    return IntendedUse(
        statement="research use only; not for clinical use (imported nnU-Net model; its "
        "validation is the provider's, not fedseg's)",
        research_only=True,
        modality=modality,
        body_regions=regions or list(BodyRegion),
        training_data=TrainingData(
            kind=TrainingDataKind.UNSTATED,
            cases=sum(c for c in cases if isinstance(c, int))
            if all(isinstance(c, int) for c in cases)
            else None,
            sources=sources,
        ),
    )


def _store_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:128]
    return name or "nnunet-model"


def build_manifest(
    folders: Sequence[ModelFolder],
    models: list[dict[str, Any]],
    labels: BundleLabels,
    options: ImportOptions,
) -> dict[str, Any]:
    """The bundle's manifest (NNUNET_RECIPE.md) as JSON data."""
    channels = _channels(folders[0])
    for folder in folders[1:]:
        if [c[0] for c in _channels(folder)] != [c[0] for c in channels]:
            raise ModelBundleError(
                f"{folder.dataset_path}: channel_names differ from {folders[0].dataset_path}'s; "
                "models of one bundle must take the same input series"
            )
    name = options.name or _store_name("-".join(m["name"] for m in models))
    table = labels.table(name)
    modality = channels[0][1]
    if options.intended_use is not None:
        modality = modality or options.intended_use.modality.upper()
    if modality is None:
        raise ModelBundleError(
            f"{folders[0].dataset_path}: channel_names.0 {channels[0][0]!r} names no modality "
            "fedseg knows; pass --intended-use with the modality"
        )
    intended = options.intended_use or default_intended_use(
        modality, folders, table, options.training_sites
    )
    described = ", ".join(f"{m['name']} {m['configuration']} ({m['trainer']})" for m in models)
    return {
        "manifest_version": 1,
        "name": name,
        "version": options.version,
        "task": name,
        "modality": modality,
        "description": options.description or f"nnU-Net v2 model(s) imported: {described}",
        "intended_use": intended.model_dump(mode="json"),
        "labels": label_dicts(table),
        "runtime": RUNTIME,
        "input_channels": len(channels),
        "series": [{"modality": modality}],
        "provenance": {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "hardware": f"{platform.machine()} {platform.processor()}".strip(),
            "training_sites": list(options.training_sites),
            "federated_rounds": options.federated_rounds,
            "validation_metrics": {k: float(v) for k, v in options.validation_metrics.items()},
            "notes": (f"{options.notes}; " if options.notes else "")
            + "imported by fedseg import nnunet from "
            + ", ".join(f"{f.path.parent.name}/{f.path.name}" for f in folders)
            + (f"; label warnings: {' | '.join(labels.warnings)}" if labels.warnings else ""),
        },
        "onnx_opset": OPSET,
        "nnunet": {
            "recipe_version": RECIPE_VERSION,
            "channels": [
                {"name": channel, "modality": channel_modality_or(channel, fallback)}
                for (channel, _), fallback in zip(
                    channels, _stated_modalities(intended, modality, len(channels)), strict=True
                )
            ],
            "models": models,
        },
    }


def _stated_modalities(intended: IntendedUse, modality: str, count: int) -> list[str]:
    """Each channel's modality as the intended use states it, else channel 0's."""
    stated = [intended.channels.get(n) for n in range(count)]
    return [modality] + [(s.modality if s and s.modality else modality) for s in stated[1:]]


def channel_modality_or(name: str, default: str) -> str:
    """The modality a channel name says, else ``default`` (the intended-use modality)."""
    try:
        return channel_modality(name, "channel")
    except ModelBundleError:
        return default


def validate_manifest(data: dict[str, Any], where: Path) -> None:
    """Validate the manifest with the service's reader (the one that will run the bundle)."""
    from pydantic import ValidationError

    from service.inference.manifest import Manifest

    try:
        Manifest.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise ModelBundleError(f"{where}: the service refuses this manifest: {exc}") from exc


def import_model(folders: Sequence[Path], out: Path, options: ImportOptions) -> Path:
    """Import trained nnU-Net model folders as one bundle at ``out``; returns ``out``.

    Raises
    ------
    ModelBundleError
        For anything the importer cannot faithfully carry over; the message names the file and
        field. Nothing is written then.
    """
    if not folders:
        raise ModelBundleError("import nnunet: no model folder given")
    if out.exists() and any(out.iterdir()):
        raise ModelBundleError(f"{out}: exists and is not empty; choose a new bundle folder")
    opened = [
        open_model_folder(Path(f), options.configuration, options.folds, options.checkpoint)
        for f in folders
    ]
    labels = BundleLabels(LabelCoder(table=options.labels))
    maps = [labels.add_model(f.dataset, str(f.dataset_path)) for f in opened]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is read by the service's user
    try:
        models = []
        used: set[str] = set()
        for folder, label_map in zip(opened, maps, strict=True):
            subfolder = _store_name(str(folder.plans.get("dataset_name") or folder.path.name))
            while subfolder in used:
                subfolder += "_"
            used.add(subfolder)
            models.append(_model_entry(folder, staging, subfolder, label_map))
        manifest = build_manifest(opened, models, labels, options)
        validate_manifest(manifest, out / MANIFEST_FILE)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        write_checksums(staging)
        ModelBundle.load(staging)  # what the service will check: checksums, manifest, files
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
