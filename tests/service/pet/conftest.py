"""Fixtures for PET tests: headers from cornerstone calculate-suv JSON and synthetic ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

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
