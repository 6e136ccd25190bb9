"""A small synthetic PACS export: CT series with RTSTRUCTs and SEGs, good and bad.

Imported as ``from tests.training.sitedata.clinic import ...``. Every patient has a name, an ID
and a birth date, so the PHI scan has something to find.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from service.dicom.image_writer import SeriesSpec, write_series
from service.dicom.volume import Volume, read_volume
from service.labels import get_table
from service.regions import Region, RegionSet
from service.results.kinds import ResultKind
from service.results.outputs import OutputOptions, write_outputs
from service.results.provenance import AlgorithmIdentity
from service.results.rtstruct_writer import write_rtstruct

SHAPE = (24, 20, 8)
ALGORITHM = AlgorithmIdentity("test-planning-system", "1")


@dataclass(frozen=True)
class Patient:
    """Identifiers a PHI scan looks for."""

    name: str
    patient_id: str
    birth_date: str


def patient(number: int) -> Patient:
    return Patient(
        f"Doe^Jane{number}", f"MRN-{number:05d}", f"19{50 + number:02d}0{number}1{number}"
    )


def write_ct(root: Path, number: int) -> Volume:
    """A CT of ``patient(number)`` in ``root/ct``; the body is a box of 40 HU."""
    who = patient(number)
    spec = SeriesSpec(
        modality="CT",
        patient_id=who.patient_id,
        patient_name=who.name,
        patient_birth_date=who.birth_date,
        uid_seed=f"clinic-{number}",
        series_description="Planning CT",
    )
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = (-20.0, -15.0, 100.0 + 40 * number)
    values = np.full(SHAPE, -1000.0, dtype=np.float32)
    values[1:-1, 1:-1, :] = 40.0
    write_series(root / "ct", values, affine, spec)
    return read_volume(root / "ct")


def box(lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return mask


def write_rtstruct_file(
    path: Path, volume: Volume, structures: dict[str, np.ndarray], empty: tuple[str, ...] = ()
) -> Dataset:
    """An RTSTRUCT of ``structures`` (ROI name → mask) plus declared ROIs without contours."""
    regions = [Region(name, n, mask) for n, (name, mask) in enumerate(structures.items(), start=1)]
    # No label table: the writer would give recognised ROIs their TG-263 names.
    ds = write_rtstruct(volume, RegionSet(regions, volume.shape, volume.affine), None, ALGORITHM)
    dataset = ds.dataset
    for offset, name in enumerate(empty, start=len(regions) + 1):
        roi = Dataset()
        roi.ROINumber = offset
        roi.ReferencedFrameOfReferenceUID = volume.frame_of_reference_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        dataset.StructureSetROISequence.append(roi)
        contour = Dataset()
        contour.ReferencedROINumber = offset
        contour.ROIDisplayColor = [255, 0, 0]
        contour.ContourSequence = Sequence()
        dataset.ROIContourSequence.append(contour)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return dataset


def write_seg_file(path: Path, volume: Volume, labels: np.ndarray) -> Path:
    """A binary SEG of a ct-organs label map."""
    options = OutputOptions(formats=[ResultKind.SEG])
    written = write_outputs(volume, labels, get_table("ct-organs"), ALGORITHM, path.parent, options)
    produced = written.paths[ResultKind.SEG]
    produced.rename(path)
    return path


def set_frame_of_reference(path: Path, uid: str) -> None:
    ds = pydicom.dcmread(path)
    ds.FrameOfReferenceUID = uid
    ds.save_as(path, enforce_file_format=True)


def scan_for(folder: Path, needles: list[str]) -> dict[str, list[str]]:
    """Which files under ``folder`` hold which needle (gzip files are scanned uncompressed)."""
    found: dict[str, list[str]] = {}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        text = data.decode("latin-1").lower()
        for needle in needles:
            if needle and needle.lower() in text:
                found.setdefault(needle, []).append(str(path.relative_to(folder)))
        name = str(path.relative_to(folder)).lower()
        for needle in needles:
            if needle and needle.lower() in name:
                found.setdefault(needle, []).append(f"(file name) {path.relative_to(folder)}")
    return found
