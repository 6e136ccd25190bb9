"""Fixtures for PET tests: cornerstone calculate-suv headers, synthetic ones, DRO variants."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from service.dicom.volume import read_volume
from service.masks import load_regions
from service.pet.body_size import SuvType
from service.pet.suv import SuvConversion, to_suv
from tests.service.pet.dro_variants import Edit, enhanced

_RADIOPHARM = (
    "RadiopharmaceuticalStartTime",
    "RadiopharmaceuticalStartDateTime",
    "RadionuclideTotalDose",
    "RadionuclideHalfLife",
)
_PHILIPS = {"SUVScaleFactor": 0x70531000, "ActivityConcentrationScaleFactor": 0x70531009}
_SKIP = {"PhilipsPETPrivateGroup", "GEPrivatePostInjectionDateTime", *_RADIOPHARM}


def dataset_from_instance(instance: dict[str, object]) -> Dataset:
    ds = Dataset()
    for key, value in instance.items():
        if key not in _SKIP and value is not None:
            setattr(ds, key, value)
    info = Dataset()
    for key in _RADIOPHARM:
        if instance.get(key) is not None:
            setattr(info, key, str(instance[key]).strip() if "Time" in key else instance[key])
    ds.RadiopharmaceuticalInformationSequence = [info]
    philips = instance.get("PhilipsPETPrivateGroup") or {}
    assert isinstance(philips, dict)
    if philips:
        ds.private_block(0x7053, "Philips PET Private Group", create=True)
    for key, tag in _PHILIPS.items():
        if philips.get(key) is not None:
            ds.add_new(tag, "DS", str(philips[key]).strip())
    if instance.get("GEPrivatePostInjectionDateTime"):
        ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        ds.add_new(0x0009100D, "DT", str(instance["GEPrivatePostInjectionDateTime"]))
    return ds


def load_instances(path: Path) -> list[Dataset]:
    instances = json.loads(path.read_text())
    return [dataset_from_instance(instance) for instance in instances]


def pet_header(**overrides: object) -> Dataset:
    """A single-frame BQML PET header: 70 kg, 368.08 MBq F-18 at 10:00, series at 11:00."""
    ds = Dataset()
    ds.Modality = "PT"
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"]
    ds.SeriesDate = ds.AcquisitionDate = "20250101"
    ds.SeriesTime = ds.AcquisitionTime = "110000"
    ds.PatientWeight = "70"
    ds.PatientSize = "1.75"
    ds.PatientSex = "M"
    ds.ActualFrameDuration = 300000
    info = Dataset()
    info.RadiopharmaceuticalStartTime = "100000"
    info.RadiopharmaceuticalStartDateTime = "20250101100000"
    info.RadionuclideTotalDose = "368080000"
    info.RadionuclideHalfLife = "6586.2"
    ds.RadiopharmaceuticalInformationSequence = [info]
    for key, value in overrides.items():
        target = info if key.startswith("Radio") else ds
        if value is None:
            if key in target:
                delattr(target, key)
        else:
            setattr(target, key, value)
    return ds


@pytest.fixture(scope="session")
def suv_headers(data_dir):  # type: ignore[no-untyped-def]
    """Headers of one cornerstone calculate-suv metadata case, by name."""

    def get(case: str) -> list[Dataset]:
        return load_instances(data_dir("suv-headers/test/metadata") / f"{case}-instances.json")

    return get


@pytest.fixture
def make_header():  # type: ignore[no-untyped-def]
    """Factory of synthetic PET headers (see :func:`pet_header`)."""
    return pet_header


@pytest.fixture
def variant(data_dir, tmp_path):  # type: ignore[no-untyped-def]
    """Copy a DRO's PET with ``edit(plane, dataset)`` applied to each file, in file order.

    With ``enhanced_pet`` the edited planes are written as one Enhanced PET instance
    (``"reference-only"``: frames timed by FrameReferenceDateTime alone).
    """

    def make(case: str, edit: Edit, enhanced_pet: bool | str = False) -> Path:
        source = data_dir("suv-dro/DRO") / case / "PT"
        out = tmp_path / case
        out.mkdir(exist_ok=True)
        planes = []
        for k, path in enumerate(sorted(source.glob("*.dcm"))):
            ds = pydicom.dcmread(path)
            edit(k, ds)
            planes.append(ds)
            if not enhanced_pet:
                ds.save_as(out / path.name)
        if enhanced_pet:
            instance = enhanced(planes, reference_only=enhanced_pet == "reference-only")
            instance.save_as(out / "enhanced.dcm", enforce_file_format=True)
        return out

    return make


@pytest.fixture
def dro_values(data_dir) -> Callable[..., SuvConversion]:  # type: ignore[no-untyped-def]
    """Convert a PET folder to SUVbw and check the DRO's values inside its mask."""
    mask = data_dir("suv-dro/DRO/DRO_0_0/mask/DRO_mask.nii.gz")

    def check(folder: Path, suv_type: SuvType = SuvType.BW) -> SuvConversion:
        volume = read_volume(folder)
        suv, conversion = to_suv(volume, suv_type)
        (region,) = load_regions(mask, volume).regions
        values = suv[region.mask]
        assert values.min() == pytest.approx(0.20, rel=0.005)
        assert np.median(values) == pytest.approx(1.00, rel=0.005)
        assert values.max() == pytest.approx(4.00, rel=0.005)
        return conversion

    return check
