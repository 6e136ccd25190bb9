"""A two-channel (CT + PET) nnU-Net bundle through the study pipeline's selection and executor.

The tiny model of :mod:`.conftest` with two input channels (channel 0 CT, CT normalisation;
channel 1 PET, z-score), imported as a centre would. The study is written as DICOM: a CT and a
PET on a coarser grid, one study and one frame of reference. fedseg selects the PET as channel
1, resamples it onto the CT's grid and runs the executor; nnUNetPredictor gets the same two
channels as NIfTI files (``case_0000`` the CT, ``case_0001`` the resampled PET). Built once per
module (one tiny export, a few seconds).
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from service.config import Settings
from service.dicom.image_writer import PetAcquisition, SeriesSpec, write_series
from service.dicom.volume import Discovery, Volume, discover, load_volume
from service.errors import ModelBundleError
from service.imaging.resample import Grid, resample
from service.inference.bundle import ModelBundle, write_checksums
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, Mirroring, SessionOptions
from service.nifti import write_nifti
from service.qc.enum import QcPolicy
from service.qc.intended_use import ChannelUse, Range
from service.segment import SegmentOptions, StudySegmenter, secondary_values
from service.selection import Selection, select_series
from tests.dciodvfy import assert_valid

from .conftest import (
    CT_STATS,
    TinyModel,
    _import_bundle,
    _model_folder,
    balanced_network,
    ct_volume,
    dataset_json,
    manifest_data,
    plans,
    recipe_block,
    require_nnunet,
)

STUDY = "1.2.826.0.1.3680043.8.498.1"
FRAME = "1.2.826.0.1.3680043.8.498.2"
PET_STATS = {
    "mean": 5000.0,
    "std": 3000.0,
    "percentile_00_5": 500.0,
    "percentile_99_5": 12000.0,
    "median": 4000.0,
    "min": 0.0,
    "max": 15000.0,
}


def two_channel_plans() -> dict[str, Any]:
    """The tiny plans with a second, PET channel (z-score, as nnU-Net plans non-CT input)."""
    plan = plans()
    config = plan["configurations"]["3d_fullres"]
    config["normalization_schemes"] = ["CTNormalization", "ZScoreNormalization"]
    config["use_mask_for_norm"] = [False, False]
    plan["foreground_intensity_properties_per_channel"] = {"0": CT_STATS, "1": PET_STATS}
    return plan


def two_channel_dataset() -> dict[str, Any]:
    """dataset.json with channels CT and PET."""
    return {**dataset_json(), "channel_names": {"0": "CT", "1": "PET"}}


def pet_affine(shift_mm: float = 0.0) -> np.ndarray:
    """A coarser PET grid (2.4 × 2.4 × 8 mm) over the CT's extent, shifted along x if asked."""
    affine = np.diag([2.4, 2.4, 8.0, 1.0])
    affine[:3, 3] = (-39.4 + shift_mm, -29.4, 102.0)
    return affine


def pet_array(affine: np.ndarray, seed: int = 1) -> np.ndarray:
    """Bq/mL: the CT's body warm, its organ hot, evaluated at this grid's voxel centres."""
    shape = (28, 20, 7)
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    points = np.tensordot(affine[:3, :3], index, axes=1) + affine[:3, 3, None, None, None]
    ct = ct_volume().affine  # CT voxel coordinates of each PET voxel centre
    i, j, k = ((points[a] - ct[a, 3]) / ct[a, a] for a in range(3))
    array = np.zeros(shape, dtype=np.float32)
    array[((i - 28) / 24) ** 2 + ((j - 20) / 16) ** 2 <= 1] = 2000.0
    array[((i - 20) / 9) ** 2 + ((j - 18) / 8) ** 2 + ((k - 7) / 4) ** 2 <= 1] = 12000.0
    rng = np.random.default_rng(seed)
    return array + rng.normal(0, 100, shape).astype(np.float32).clip(0, None)


def _network(plan: dict[str, Any], seed: int) -> Any:
    """The two-input tiny network, its classes balanced on the study's CT and PET."""
    volume = ct_volume()
    pet = resample(
        pet_array(pet_affine()),
        Grid((28, 20, 7), pet_affine()),
        Grid(volume.array.shape, volume.affine),
    )
    ct = (np.clip(volume.array, -900, 400) - CT_STATS["mean"]) / CT_STATS["std"]
    pet = (pet - pet.mean()) / pet.std()
    window = np.stack([ct, pet]).transpose(0, 3, 1, 2)[None]  # transpose [0, 2, 1]
    return balanced_network(plan, seed, window)


@pytest.fixture(scope="module")
def pet_ct_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The two-channel model (two folds), imported into a bundle."""
    require_nnunet()
    plan, dataset = two_channel_plans(), two_channel_dataset()
    networks = [_network(plan, seed) for seed in (21, 22)]
    states = [copy.deepcopy(n.state_dict()) for n in networks]
    bundle = _import_bundle(tmp_path_factory.mktemp("pet-ct-nnunet"), networks, plan, dataset)
    return TinyModel(plans=plan, dataset=dataset, states=states, network=networks[0], bundle=bundle)


def write_selection_bundle(
    folder: Path,
    channels: tuple[tuple[str, str], ...] = (("CT", "CT"), ("PET", "PT")),
    channel_use: dict[str, Any] | None = None,
) -> Path:
    """A two-channel bundle for the selection step alone (no torch): its ONNX file is never
    opened, since selection reads only the manifest. ``channels``: (name, modality) of each;
    ``channel_use``: the intended use of the further channels (``intended_use.channels``)."""
    onnx = b"selection reads only the manifest"
    fold = {
        "fold": 0,
        "onnx": "m/fold_0.onnx",
        "onnx_sha256": hashlib.sha256(onnx).hexdigest(),
        "checkpoint": "checkpoint_final.pth",
        "checkpoint_sha256": "0" * 64,
    }
    block = recipe_block([fold])
    block["channels"] = [{"name": name, "modality": modality} for name, modality in channels]
    model = block["models"][0]
    model["normalisation"].append({"scheme": "ZScoreNormalization", "use_mask_for_norm": False})
    folder.mkdir(parents=True)
    (folder / "m").mkdir()
    (folder / "m/fold_0.onnx").write_bytes(onnx)
    manifest = {**manifest_data(block), "input_channels": 2}
    primary = channels[0][1]
    manifest["modality"] = primary
    manifest["intended_use"] = {**manifest["intended_use"], "modality": primary}
    if channel_use is not None:
        manifest["intended_use"]["channels"] = channel_use
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_checksums(folder)
    return folder


@pytest.fixture(scope="module")
def selection_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CT + PET bundle for the selection step alone."""
    return write_selection_bundle(tmp_path_factory.mktemp("selection") / "bundle")


@dataclass
class Study:
    folder: Path
    found: Discovery


def write_study(folder: Path, pets: list[tuple[str, np.ndarray]], with_ct: bool = True) -> Study:
    """CT (frame FRAME) and PET series (frame UID, affine) of one study, as DICOM."""
    volume = ct_volume()
    if with_ct:
        spec = SeriesSpec(
            modality="CT", study_instance_uid=STUDY, frame_of_reference_uid=FRAME, series_number=1
        )
        write_series(folder / "ct", volume.array, volume.affine, spec)
    for number, (frame, affine) in enumerate(pets, start=2):
        spec = SeriesSpec(
            modality="PT",
            study_instance_uid=STUDY,
            frame_of_reference_uid=frame,
            series_number=number,
            series_instance_uid=f"{STUDY}.{number}",
            pet=PetAcquisition(
                injected_dose_bq=3.7e8,
                injection_datetime=datetime(2024, 1, 1, 9, 0),
                series_datetime=datetime(2024, 1, 1, 10, 0),
                patient_weight_kg=70.0,
            ),
        )
        write_series(folder / f"pet{number}", pet_array(affine), affine, spec)
    return Study(folder, discover([folder], Settings()))


def _select(bundle: Path, study: Study) -> Selection:
    return select_series(study.found.plans, [ModelBundle.load(bundle)], force=True)


@pytest.mark.parametrize("mirroring", [False, True])
def test_pet_ct_labels_equal_nnunet_predictor(
    pet_ct_model: TinyModel, tmp_path: Path, mirroring: bool
) -> None:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.postprocessing.remove_connected_components import (
        remove_all_but_largest_component_from_segmentation,
    )

    study = write_study(tmp_path / "study", [(FRAME, pet_affine())])
    bundle = ModelBundle.load(pet_ct_model.bundle)
    assert bundle.manifest.nnunet is not None
    assert [c.modality for c in bundle.manifest.nnunet.channels] == ["CT", "PT"]
    (candidate,) = _select(pet_ct_model.bundle, study).candidates
    assert candidate.plan.modality == "CT"
    assert [p.modality for p in candidate.secondary] == ["PT"]
    ct = load_volume(candidate.plan)
    channel = secondary_values(candidate.secondary[0], 1, ct, bundle.manifest)
    pet = channel.values
    assert pet.shape == ct.array.shape
    segmenter = open_segmenter(
        bundle,
        SessionOptions(device=Device.CPU),
        mirroring=Mirroring.ON if mirroring else Mirroring.OFF,
    )
    labels = segmenter.segment(ct, None, ct.array, [pet]).labels

    paths = [
        write_nifti(tmp_path / "case_0000.nii.gz", ct.array, ct.affine),
        write_nifti(tmp_path / "case_0001.nii.gz", pet, ct.affine),
    ]
    data, properties = SimpleITKIO().read_images([str(p) for p in paths])
    assert data.shape[0] == 2
    predictor = pet_ct_model.predictor(use_mirroring=mirroring)
    expected = predictor.predict_single_npy_array(data, properties, None, None, False)
    expected = remove_all_but_largest_component_from_segmentation(expected, [1])
    expected = np.asarray(expected).transpose(2, 1, 0)

    assert labels.shape == expected.shape
    equal = float(np.mean(labels == expected))
    assert equal >= 0.999
    for value in (1, 2, 3):
        a, b = labels == value, expected == value
        assert b.any(), f"label {value} absent from nnU-Net's result: the test would be weak"
        dice = 2 * np.sum(a & b) / (a.sum() + b.sum())
        assert dice >= 0.995, f"label {value}: Dice {dice:.4f}"
    # The PET channel matters: without it (zeros) the labels differ.
    blind = segmenter.segment(ct, None, ct.array, [np.zeros_like(pet)]).labels
    assert float(np.mean(blind != labels)) > 0.01


def test_study_pipeline_records_the_secondary_series(
    pet_ct_model: TinyModel, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "study", [(FRAME, pet_affine())])
    bundle = ModelBundle.load(pet_ct_model.bundle)
    options = SegmentOptions(device=Device.CPU, force=True)
    result = StudySegmenter([bundle], options).run_found(study.found, tmp_path / "out", Settings())
    (series,) = result.series
    assert series.error is None, series.error
    assert series.modality == "CT"
    assert series.secondary_series == [f"{STUDY}.2"]
    assert series.present


def _referenced(path: Path) -> dict[str, list[str]]:
    """The series each written object references, where it lists its sources."""
    ds = pydicom.dcmread(path)
    if ds.Modality == "SEG":
        return {
            "ReferencedSeriesSequence": [s.SeriesInstanceUID for s in ds.ReferencedSeriesSequence]
        }
    if ds.Modality == "RTSTRUCT":
        (frame,) = ds.ReferencedFrameOfReferenceSequence
        (study,) = frame.RTReferencedStudySequence
        return {
            "RTReferencedSeriesSequence": [
                s.SeriesInstanceUID for s in study.RTReferencedSeriesSequence
            ]
        }
    (evidence,) = ds.CurrentRequestedProcedureEvidenceSequence
    return {"evidence": [s.SeriesInstanceUID for s in evidence.ReferencedSeriesSequence]}


def test_every_result_file_references_both_series(pet_ct_model: TinyModel, tmp_path: Path) -> None:
    study = write_study(tmp_path / "study", [(FRAME, pet_affine())])
    bundle = ModelBundle.load(pet_ct_model.bundle)
    options = SegmentOptions(device=Device.CPU, force=True, qc_policy=QcPolicy.FLAG)
    out = tmp_path / "out"
    result = StudySegmenter([bundle], options).run_found(study.found, out, Settings())
    (series,) = result.series
    assert series.error is None, series.error
    ct, pet = series.series_instance_uid, f"{STUDY}.2"
    outputs = {kind: Path(path) for kind, path in series.outputs.items()}
    seg = pydicom.dcmread(outputs["seg"])
    assert _referenced(outputs["seg"]) == {"ReferencedSeriesSequence": [ct, pet]}
    assert _referenced(outputs["rtstruct"]) == {"RTReferencedSeriesSequence": [ct, pet]}
    assert _referenced(outputs["sr"]) == {"evidence": [seg.SeriesInstanceUID, ct, pet]}
    for kind in ("seg", "rtstruct", "sr"):
        assert_valid(outputs[kind])
    measurements = json.loads(outputs["measurements"].read_text())
    assert measurements["source_series"] == [
        {"series_instance_uid": ct, "modality": "CT"},
        {"series_instance_uid": pet, "modality": "PT"},
    ]


def test_the_pet_covering_the_ct_is_chosen(selection_bundle: Path, tmp_path: Path) -> None:
    # Series 2 lies 40 mm beside the CT, series 3 over it: 3 wins despite its number.
    study = write_study(
        tmp_path / "study", [(FRAME, pet_affine(shift_mm=40.0)), (FRAME, pet_affine())]
    )
    (candidate,) = _select(selection_bundle, study).candidates
    assert [p.stack.series_instance_uid for p in candidate.secondary] == [f"{STUDY}.3"]
    # In the other order the covering one still wins (not the first or last found).
    study = write_study(
        tmp_path / "swapped", [(FRAME, pet_affine()), (FRAME, pet_affine(shift_mm=40.0))]
    )
    (candidate,) = _select(selection_bundle, study).candidates
    assert [p.stack.series_instance_uid for p in candidate.secondary] == [f"{STUDY}.2"]


def test_a_study_without_pet_is_refused_naming_the_channel(
    selection_bundle: Path, tmp_path: Path
) -> None:
    study = write_study(tmp_path / "study", [])
    selection = _select(selection_bundle, study)
    assert not selection.candidates
    (refused,) = selection.refused
    assert "channel 1 (PET, modality PT)" in refused.reason
    assert "no PT series" in refused.reason


def test_the_refusal_is_the_series_error(pet_ct_model: TinyModel, tmp_path: Path) -> None:
    study = write_study(tmp_path / "study", [])
    bundle = ModelBundle.load(pet_ct_model.bundle)
    options = SegmentOptions(device=Device.CPU, force=True)
    result = StudySegmenter([bundle], options).run_found(study.found, tmp_path / "out", Settings())
    (series,) = result.series
    assert result.failed
    assert series.modality == "CT"
    assert series.error is not None and "channel 1 (PET, modality PT)" in series.error


def test_a_pet_in_another_frame_of_reference_is_refused(
    selection_bundle: Path, tmp_path: Path
) -> None:
    other = "1.2.826.0.1.3680043.8.498.99"
    study = write_study(tmp_path / "study", [(other, pet_affine())])
    selection = _select(selection_bundle, study)
    assert not selection.candidates
    (refused,) = selection.refused
    assert "channel 1 (PET, modality PT)" in refused.reason
    assert "frame of reference" in refused.reason
    assert other in refused.reason and FRAME in refused.reason


def test_one_series_for_two_channels_is_an_error(pet_ct_model: TinyModel) -> None:
    volume: Volume = ct_volume()
    segmenter = open_segmenter(ModelBundle.load(pet_ct_model.bundle), SessionOptions())
    with pytest.raises(Exception, match="takes 2 channels"):
        segmenter.segment(volume)


PET_CT = (("PET", "PT"), ("CT", "CT"))  # channel 0 PET (the output's grid), channel 1 CT


def _add_series(folder: Path, modality: str, number: int, step_mm: float = 4.0) -> str:
    """A CT-like series of ``modality`` in the study and frame of reference; its UID."""
    volume = ct_volume()
    affine = volume.affine.copy()
    affine[2, 2] = step_mm
    uid = f"{STUDY}.{number}"
    spec = SeriesSpec(
        modality=modality,
        study_instance_uid=STUDY,
        frame_of_reference_uid=FRAME,
        series_number=number,
        series_instance_uid=uid,
    )
    write_series(folder / f"series{number}", volume.array + 1000.0, affine, spec)
    return uid


def _pet_study(folder: Path, others: list[tuple[str, int, float]]) -> Discovery:
    """The PET of :func:`write_study` and further series (modality, number, slice step)."""
    write_study(folder, [(FRAME, pet_affine())], with_ct=False)
    for modality, number, step in others:
        _add_series(folder, modality, number, step)
    return discover([folder], Settings())


def test_a_pet_whose_channel_1_series_is_an_mr_is_refused_naming_it(tmp_path: Path) -> None:
    use = {"1": {"modality": "CT", "slice_thickness_mm": {"max": 5.0}}}
    bundle = ModelBundle.load(write_selection_bundle(tmp_path / "bundle", PET_CT, use))
    found = _pet_study(tmp_path / "study", [("MR", 5, 4.0)])
    for force in (False, True):  # a missing channel is no intended-use finding to force
        selection = select_series(found.plans, [bundle], force=force)
        assert not selection.candidates and not selection.skipped
        (refused,) = selection.refused
        assert refused.plan.modality == "PT"
        assert "needs channel 1 (CT, modality CT)" in refused.reason
        assert f"series {STUDY}.5 is MR" in refused.reason
        assert "channel 1 takes CT only" in refused.reason


def test_a_ct_outside_the_channels_intended_use_is_skipped_unless_forced(
    tmp_path: Path,
) -> None:
    use = {"1": {"slice_thickness_mm": {"max": 3.0}}}  # the modality is the recipe's
    bundle = ModelBundle.load(write_selection_bundle(tmp_path / "bundle", PET_CT, use))
    found = _pet_study(tmp_path / "study", [("CT", 6, 4.0)])
    rule = f"channel 1 (CT) series {STUDY}.6: slice thickness 4 mm is outside the model's <= 3 mm"
    selection = select_series(found.plans, [bundle])
    assert not selection.candidates and not selection.refused
    (skipped,) = selection.skipped
    assert skipped.plan.modality == "PT"
    assert skipped.applicability.reasons == [rule]
    forced = select_series(found.plans, [bundle], force=True)
    (candidate,) = forced.candidates
    assert [p.stack.series_instance_uid for p in candidate.secondary] == [f"{STUDY}.6"]
    assert candidate.applicability.forced and candidate.applicability.reasons == [rule]


def test_a_ct_inside_the_channels_intended_use_wins_over_a_covering_one(tmp_path: Path) -> None:
    use = {"1": {"modality": "CT", "slice_thickness_mm": {"max": 3.0}}}
    bundle = ModelBundle.load(write_selection_bundle(tmp_path / "bundle", PET_CT, use))
    # Series 6 (4 mm) covers the PET best; series 7 (2 mm, half the extent) meets the rule.
    found = _pet_study(tmp_path / "study", [("CT", 6, 4.0), ("CT", 7, 2.0)])
    (candidate,) = select_series(found.plans, [bundle]).candidates
    assert [p.stack.series_instance_uid for p in candidate.secondary] == [f"{STUDY}.7"]
    assert candidate.applicability.inside
    checks = [(f.check.value, f.status.value) for f in candidate.applicability.findings]
    assert ("slice_thickness", "pass") in checks
    # Without the rule, coverage decides (the channel is checked for its modality alone).
    plain = ModelBundle.load(write_selection_bundle(tmp_path / "plain", PET_CT))
    (candidate,) = select_series(found.plans, [plain]).candidates
    assert [p.stack.series_instance_uid for p in candidate.secondary] == [f"{STUDY}.6"]


def test_a_channels_stated_modality_must_be_its_recipes(tmp_path: Path) -> None:
    folder = write_selection_bundle(tmp_path / "bundle", PET_CT, {"1": {"modality": "MR"}})
    with pytest.raises(
        ModelBundleError,
        match=r"intended_use\.channels\.1\.modality 'MR' differs from nnunet\.channels\[1\] "
        r"\(CT, modality 'CT'\)",
    ):
        ModelBundle.load(folder)


def test_import_takes_a_channels_modality_from_the_intended_use(
    pet_ct_model: TinyModel, tmp_path: Path
) -> None:
    from training.nnunet.importer import ImportOptions, import_model

    # Channel 1's name says no modality: the importer used to give it channel 0's (CT).
    dataset = {**two_channel_dataset(), "channel_names": {"0": "CT", "1": "tracer"}}
    folder = _model_folder(tmp_path / "model", [pet_ct_model.network], pet_ct_model.plans, dataset)
    base = ModelBundle.load(pet_ct_model.bundle).manifest.intended_use
    stated = base.model_copy(
        update={"channels": {1: ChannelUse(modality="PT", slice_thickness_mm=Range(max=10.0))}}
    )
    options = ImportOptions(name="tiny-nnunet", intended_use=stated)
    manifest = ModelBundle.load(import_model([folder], tmp_path / "stated", options)).manifest
    assert manifest.nnunet is not None
    assert [(c.name, c.modality) for c in manifest.nnunet.channels] == [
        ("CT", "CT"),
        ("tracer", "PT"),
    ]
    assert manifest.channel_intended_use(1).slice_thickness_mm.max == 10.0
    plain = import_model([folder], tmp_path / "plain", ImportOptions(name="tiny-nnunet"))
    recipe = ModelBundle.load(plain).manifest.nnunet
    assert recipe is not None and [c.modality for c in recipe.channels] == ["CT", "CT"]


def _pet_primary_bundle(pet_ct_model: TinyModel, folder: Path) -> ModelBundle:
    """The PET/CT model with PET as channel 0 and CT as channel 1 (image checks by default)."""
    shutil.copytree(pet_ct_model.bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["nnunet"]["channels"] = manifest["nnunet"]["channels"][::-1]
    manifest["modality"] = "PT"
    manifest["series"] = [{"modality": "PT"}]
    # The test series say BodyPartExamined CHEST: these regions let their headers pass.
    manifest["intended_use"] = {
        **manifest["intended_use"],
        "modality": "PT",
        "body_regions": ["thorax", "abdomen"],
        "channels": {"1": {}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    write_checksums(folder)
    return ModelBundle.load(folder)


@pytest.mark.parametrize("force", [False, True])
def test_a_ct_channel_whose_image_shows_no_body_is_skipped_unless_forced(
    pet_ct_model: TinyModel, tmp_path: Path, force: bool
) -> None:
    """The channel's own image is judged as channel 0's is: an empty CT is no patient."""
    bundle = _pet_primary_bundle(pet_ct_model, tmp_path / "bundle")
    study = write_study(tmp_path / "study", [(FRAME, pet_affine())], with_ct=False)
    air = ct_volume()
    spec = SeriesSpec(
        modality="CT",
        study_instance_uid=STUDY,
        frame_of_reference_uid=FRAME,
        series_number=9,
        series_instance_uid=f"{STUDY}.9",
    )
    write_series(study.folder / "air", np.full_like(air.array, -1000.0), air.affine, spec)
    found = discover([study.folder], Settings())
    options = SegmentOptions(device=Device.CPU, force=force, qc_policy=QcPolicy.OFF)
    result = StudySegmenter([bundle], options).run_found(found, tmp_path / "out", Settings())
    (series,) = result.series
    assert series.modality == "PT"
    reason = f"channel 1 (CT) series {STUDY}.9: the image shows no body"
    assert reason in series.applicability["reasons"]
    assert series.skipped is not force
    assert series.error is None
    assert bool(series.present) is force


def test_a_ct_channel_showing_a_body_passes_the_image_checks(
    pet_ct_model: TinyModel, tmp_path: Path
) -> None:
    bundle = _pet_primary_bundle(pet_ct_model, tmp_path / "bundle")
    study = write_study(tmp_path / "study", [(FRAME, pet_affine())])
    options = SegmentOptions(device=Device.CPU, qc_policy=QcPolicy.OFF)
    result = StudySegmenter([bundle], options).run_found(study.found, tmp_path / "out", Settings())
    (series,) = result.series
    findings = {
        f["check"]: f["status"]
        for f in series.applicability["findings"]
        if f["message"].startswith("channel 1 (CT)")
    }
    assert findings["body_present"] == "pass", series.applicability
