"""Write a voxel array and its affine as a single-frame CT, PET or MR image series.

Used by the synthetic phantoms and by tests that need real DICOM files with known content. The
array follows fedseg's ``[i, j, k]`` convention (see :mod:`service.dicom.geometry`); plane ``k``
becomes one file whose pixel matrix is ``array[:, :, k].T`` (rows, columns).

The reader orders planes along the slice normal (row cosine × column cosine). An affine whose
third column points along that normal reads back unchanged; one whose third column points the
other way (a left-handed grid) is written as given and reads back with ``k`` reversed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from service.dicom.defined_terms import DecayCorrection, PatientSex, PetUnits

_ORTHOGONAL_TOLERANCE = 1e-6  # |cos| between axes; larger means a sheared grid
_INT16_MAX = 32767
_IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's root, "fedseg" implementation


class Modality(StrEnum):
    """Image modalities the writer produces."""

    CT = "CT"
    PT = "PT"
    MR = "MR"


class PatientPosition(StrEnum):
    """Patient position on the table (DICOM PatientPosition defined terms used here)."""

    HFS = "HFS"
    FFS = "FFS"
    HFP = "HFP"
    FFP = "FFP"
    HFDR = "HFDR"
    HFDL = "HFDL"
    FFDR = "FFDR"
    FFDL = "FFDL"


_SOP_CLASS = {
    Modality.CT: CTImageStorage,
    Modality.PT: PositronEmissionTomographyImageStorage,
    Modality.MR: MRImageStorage,
}


@dataclass(frozen=True)
class PetAcquisition:
    """PET acquisition and radiopharmaceutical attributes, everything that SUV needs.

    Times are naive local datetimes as DICOM stores them; ``injected_dose_bq`` is the dose at
    ``injection_datetime``.
    """

    injected_dose_bq: float
    injection_datetime: datetime
    series_datetime: datetime
    patient_weight_kg: float
    half_life_s: float = 6586.2
    patient_height_m: float | None = None
    patient_sex: str = "O"
    units: str = "BQML"
    decay_correction: str = "START"
    radionuclide: str = "^18^Fluorine"
    frame_duration_ms: int = 180000

    def __post_init__(self) -> None:
        if not self.injected_dose_bq > 0:
            raise ValueError(f"injected dose must be positive, got {self.injected_dose_bq} Bq")
        if not self.half_life_s > 0:
            raise ValueError(f"half-life must be positive, got {self.half_life_s} s")
        if not self.patient_weight_kg > 0:
            raise ValueError(f"patient weight must be positive, got {self.patient_weight_kg} kg")
        if self.patient_height_m is not None and not 0.2 < self.patient_height_m < 3.0:
            raise ValueError(f"patient height {self.patient_height_m} m is not plausible")
        if self.series_datetime < self.injection_datetime:
            raise ValueError("series time is before the injection time")
        if self.frame_duration_ms <= 0:
            raise ValueError("frame duration must be positive")
        PatientSex(self.patient_sex)
        PetUnits(self.units)
        DecayCorrection(self.decay_correction)

    def decay_factor(self) -> float:
        """Fraction of the injected activity left at the series time."""
        elapsed = (self.series_datetime - self.injection_datetime).total_seconds()
        return float(2.0 ** (-elapsed / self.half_life_s))

    def suv_bw_factor(self) -> float:
        """SUVbw per Bq/mL: weight (g) / dose decayed to the series start (Bq)."""
        return self.patient_weight_kg * 1000.0 / (self.injected_dose_bq * self.decay_factor())


@dataclass(frozen=True)
class SeriesSpec:
    """Identity and acquisition attributes of a series to write.

    When ``uid_seed`` is set, every UID not given explicitly (study, series, frame of reference,
    instances) is derived from it, so the same seed writes byte-identical files.
    ``patient_position`` goes to PatientPosition for CT and MR; the PET IOD forbids that
    attribute, so PET records it as PatientOrientationCodeSequence and
    PatientGantryRelationshipCodeSequence codes. The geometry always comes from the affine.
    """

    modality: str
    patient_id: str = "PHANTOM"
    patient_name: str = "Phantom^Fedseg"
    patient_sex: str = "O"
    patient_birth_date: str = ""
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_number: int = 1
    series_description: str = ""
    study_description: str = ""
    accession_number: str = ""
    patient_position: str = "HFS"
    manufacturer: str = "fedseg phantom"
    manufacturer_model_name: str = ""
    institution_name: str = ""
    station_name: str = ""
    pet: PetAcquisition | None = None
    uid_seed: str | None = None
    study_datetime: datetime = field(default_factory=lambda: datetime(2024, 1, 1, 9, 0, 0))

    def __post_init__(self) -> None:
        modality = Modality(self.modality)
        PatientPosition(self.patient_position)
        PatientSex(self.patient_sex)
        if modality is Modality.PT and self.pet is None:
            raise ValueError("a PT series needs PET acquisition attributes (pet=PetAcquisition)")
        if modality is not Modality.PT and self.pet is not None:
            raise ValueError(f"PET acquisition attributes given for a {modality.value} series")
        if self.series_number < 0:
            raise ValueError("series number must not be negative")
        if self.patient_birth_date and len(self.patient_birth_date) != 8:
            raise ValueError("patient birth date must be YYYYMMDD or empty")

    def uid(self, *parts: object) -> str:
        """Derive a UID from ``uid_seed`` and ``parts`` (a random one without a seed)."""
        if self.uid_seed is None:
            return str(generate_uid())
        return str(generate_uid(entropy_srcs=[self.uid_seed, *map(str, parts)]))


@dataclass(frozen=True)
class PlaneGeometry:
    """Image Plane attributes derived from a voxel→LPS affine."""

    row_cosine: np.ndarray
    column_cosine: np.ndarray
    column_spacing: float  # along a row, |affine[:3, 0]|
    row_spacing: float  # between rows, |affine[:3, 1]|
    slice_step: float  # |affine[:3, 2]|
    origin: np.ndarray
    step: np.ndarray  # affine[:3, 2]

    @classmethod
    def from_affine(cls, affine: np.ndarray) -> PlaneGeometry:
        """Check that ``affine`` is an unsheared grid and take its plane geometry.

        Raises
        ------
        ValueError
            If the affine is not 4x4, has a zero axis, or its axes are not orthogonal.
        """
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.allclose(affine[3], [0, 0, 0, 1]):
            raise ValueError("affine must be 4x4 with last row (0, 0, 0, 1)")
        axes = affine[:3, :3]
        norms = np.linalg.norm(axes, axis=0)
        if np.any(norms <= 0) or not np.all(np.isfinite(axes)):
            raise ValueError(f"affine has a zero or non-finite voxel axis (lengths {norms})")
        unit = axes / norms
        cosines = unit.T @ unit - np.eye(3)
        if np.max(np.abs(cosines)) > _ORTHOGONAL_TOLERANCE:
            raise ValueError(
                "affine is sheared (voxel axes are not orthogonal, largest cosine "
                f"{np.max(np.abs(cosines)):.3g}); a single-frame image series cannot hold a "
                "gantry-tilted grid, resample it first"
            )
        return cls(
            row_cosine=unit[:, 0],
            column_cosine=unit[:, 1],
            column_spacing=float(norms[0]),
            row_spacing=float(norms[1]),
            slice_step=float(norms[2]),
            origin=affine[:3, 3].copy(),
            step=affine[:3, 2].copy(),
        )

    def position(self, k: int) -> np.ndarray:
        """ImagePositionPatient of plane ``k`` (centre of its first pixel), LPS mm."""
        return self.origin + k * self.step


def _ds(value: float) -> DSfloat:
    return DSfloat(float(value), auto_format=True)


def _date(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def _time(moment: datetime) -> str:
    return moment.strftime("%H%M%S.%f")[:13]


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _common(spec: SeriesSpec, uids: dict[str, str]) -> Dataset:
    """Patient, study, series, frame of reference and equipment attributes (same per file)."""
    ds = Dataset()
    when = spec.pet.series_datetime if spec.pet is not None else spec.study_datetime
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = spec.patient_birth_date
    ds.PatientSex = spec.pet.patient_sex if spec.pet is not None else spec.patient_sex
    ds.StudyInstanceUID = uids["study"]
    ds.StudyDate = _date(spec.study_datetime)
    ds.StudyTime = _time(spec.study_datetime)
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = spec.accession_number
    if spec.study_description:
        ds.StudyDescription = spec.study_description
    ds.Modality = spec.modality
    ds.SeriesInstanceUID = uids["series"]
    ds.SeriesNumber = spec.series_number
    ds.SeriesDate = _date(when)
    ds.SeriesTime = _time(when)
    if spec.series_description:
        ds.SeriesDescription = spec.series_description
    ds.PatientPosition = spec.patient_position
    ds.BodyPartExamined = "CHEST" if spec.modality != Modality.MR.value else "ABDOMEN"
    ds.FrameOfReferenceUID = uids["frame"]
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = spec.manufacturer
    if spec.manufacturer_model_name:
        ds.ManufacturerModelName = spec.manufacturer_model_name
    if spec.institution_name:
        ds.InstitutionName = spec.institution_name
    if spec.station_name:
        ds.StationName = spec.station_name
    ds.SoftwareVersions = "fedseg"
    ds.BurnedInAnnotation = "NO"
    return ds


def _ct_attributes(ds: Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = _ds(120)
    ds.DataCollectionDiameter = _ds(500)
    ds.ReconstructionDiameter = _ds(500)
    ds.GantryDetectorTilt = _ds(0)
    ds.TableHeight = _ds(150)
    ds.RotationDirection = "CW"
    ds.ExposureTime = 1000
    ds.XRayTubeCurrent = 200
    ds.Exposure = 200
    ds.ConvolutionKernel = "STANDARD"
    ds.RescaleType = "HU"
    ds.AcquisitionNumber = 1


def _mr_attributes(ds: Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = _ds(500)
    ds.EchoTime = _ds(15)
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = _ds(1.5)
    ds.ImagedNucleus = "1H"
    ds.ImagingFrequency = _ds(63.87)
    ds.NumberOfAverages = _ds(1)
    ds.EchoNumbers = 1
    ds.AcquisitionNumber = 1


def _radiopharmaceutical(pet: PetAcquisition) -> Dataset:
    item = Dataset()
    item.Radiopharmaceutical = "Fluorodeoxyglucose"
    item.RadiopharmaceuticalStartTime = _time(pet.injection_datetime)
    item.RadiopharmaceuticalStartDateTime = pet.injection_datetime.strftime("%Y%m%d%H%M%S.%f")
    item.RadionuclideTotalDose = _ds(pet.injected_dose_bq)
    item.RadionuclideHalfLife = _ds(pet.half_life_s)
    item.RadionuclidePositronFraction = _ds(0.9673)
    item.RadionuclideCodeSequence = Sequence([_code("77004003", "SCT", pet.radionuclide)])
    item.RadiopharmaceuticalCodeSequence = Sequence(
        [_code("35321007", "SCT", "Fluorodeoxyglucose F^18^")]
    )
    return item


def _pet_series_attributes(ds: Dataset, pet: PetAcquisition, n_slices: int) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Units = pet.units
    ds.CountsSource = "EMISSION"
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.NumberOfSlices = n_slices
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    ds.DecayCorrection = pet.decay_correction
    ds.RandomsCorrectionMethod = "DLYD"
    ds.AttenuationCorrectionMethod = "CT"
    ds.ScatterCorrectionMethod = "Model-based"
    ds.ReconstructionMethod = "OSEM"
    ds.CollimatorType = "NONE"
    ds.AcquisitionStartCondition = "MANU"
    ds.AcquisitionTerminationCondition = "TIME"
    ds.RadiopharmaceuticalInformationSequence = Sequence([_radiopharmaceutical(pet)])
    ds.PatientWeight = _ds(pet.patient_weight_kg)
    if pet.patient_height_m is not None:
        ds.PatientSize = _ds(pet.patient_height_m)
    ds.AcquisitionDate = _date(pet.series_datetime)
    ds.AcquisitionTime = _time(pet.series_datetime)
    ds.FrameReferenceTime = _ds(pet.frame_duration_ms / 2.0)
    ds.ActualFrameDuration = pet.frame_duration_ms
    if pet.decay_correction != DecayCorrection.NONE.value:
        ds.DecayFactor = _ds(1.0)  # acquisition starts at the series reference time
    ds.DoseCalibrationFactor = _ds(1.0)


def _gantry_relationship(position: str) -> Dataset:
    if position.startswith("FF"):
        return _code("102541007", "SCT", "feet-first")
    return _code("399488007", "SCT", "headfirst")


def _patient_orientation(position: str) -> Dataset:
    item = _code("102538003", "SCT", "recumbent")
    if position.endswith("P"):
        modifier = _code("1240000", "SCT", "prone")
    elif position.endswith(("DR", "DL")):
        modifier = _code("102535000", "SCT", "lateral decubitus")
    else:
        modifier = _code("40199007", "SCT", "supine")
    item.PatientOrientationModifierCodeSequence = Sequence([modifier])
    return item


def _stored_pixels(plane: np.ndarray, modality: Modality) -> tuple[np.ndarray, float, float]:
    """Integer pixels and the (slope, intercept) that map them back to ``plane``'s values."""
    if modality is Modality.PT:
        # One slope per slice, from the slice's largest magnitude, as PET scanners store them.
        peak = float(np.max(np.abs(plane))) if plane.size else 0.0
        slope = peak / _INT16_MAX if peak > 0 else 1.0
        return np.round(plane / slope).astype(np.int16), slope, 0.0
    rounded = np.round(plane)
    lo, hi = float(rounded.min()), float(rounded.max())
    if lo < -32768 or hi > _INT16_MAX:
        raise ValueError(
            f"{modality.value} values {lo:g}..{hi:g} do not fit 16-bit signed integers"
        )
    return rounded.astype(np.int16), 1.0, 0.0


def _image_plane(ds: Dataset, geometry: PlaneGeometry, k: int) -> None:
    position = geometry.position(k)
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in (*geometry.row_cosine, *geometry.column_cosine)]
    ds.PixelSpacing = [_ds(geometry.row_spacing), _ds(geometry.column_spacing)]
    ds.SliceThickness = _ds(geometry.slice_step)
    normal = np.cross(geometry.row_cosine, geometry.column_cosine)
    ds.SliceLocation = _ds(float(position @ normal))


def _pixel_module(ds: Dataset, pixels: np.ndarray, slope: float, intercept: float) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()


def _instance(
    common: Dataset, spec: SeriesSpec, geometry: PlaneGeometry, plane: np.ndarray, k: int
) -> Dataset:
    modality = Modality(spec.modality)
    ds = Dataset()
    ds.update(common)
    sop_uid = spec.uid("instance", common.SeriesInstanceUID, k)
    ds.SOPClassUID = _SOP_CLASS[modality]
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = k + 1
    ds.ContentDate = common.SeriesDate
    ds.ContentTime = common.SeriesTime
    if modality is Modality.CT:
        _ct_attributes(ds)
    elif modality is Modality.MR:
        _mr_attributes(ds)
        ds.SpacingBetweenSlices = _ds(geometry.slice_step)
    else:
        assert spec.pet is not None
        _pet_series_attributes(ds, spec.pet, int(common.NumberOfSlices))
        ds.ImageIndex = k + 1
        ds.PatientGantryRelationshipCodeSequence = Sequence(
            [_gantry_relationship(spec.patient_position)]
        )
        # The NM/PET IOD records the position as codes and forbids PatientPosition beside them.
        ds.PatientOrientationCodeSequence = Sequence([_patient_orientation(spec.patient_position)])
        del ds.PatientPosition
    _image_plane(ds, geometry, k)
    pixels, slope, intercept = _stored_pixels(plane.T, modality)
    _pixel_module(ds, pixels, slope, intercept)
    if modality is Modality.MR:  # the MR Image IOD has no Modality LUT
        del ds.RescaleIntercept, ds.RescaleSlope
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = UID(_IMPLEMENTATION_UID)
    return ds


def write_series(
    out_dir: Path, array: np.ndarray, affine: np.ndarray, spec: SeriesSpec
) -> list[Path]:
    """Write ``array`` (``[i, j, k]``, rescaled values) as one DICOM file per ``k`` plane.

    CT and MR values are rounded to 16-bit integers (slope 1, intercept 0); PET values are
    stored with a per-slice RescaleSlope, so they read back to within half a slope step.

    Parameters
    ----------
    out_dir
        Folder to write into (created); files are named ``IM0001.dcm`` and up.
    array
        3-D array of HU, Bq/mL (or the PET ``units``) or MR signal.
    affine
        4x4 voxel→LPS affine with orthogonal axes (oblique and flipped grids are fine).
    spec
        Identity and acquisition attributes.

    Returns
    -------
    list[Path]
        The written files in ``k`` order.

    Raises
    ------
    ValueError
        If the array is not 3-D or not finite, or the affine is sheared or degenerate.
    """
    array = np.asarray(array)
    if array.ndim != 3 or min(array.shape) < 1:
        raise ValueError(f"array must be 3-D and non-empty, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("array holds NaN or infinite values")
    geometry = PlaneGeometry.from_affine(affine)
    uids = {
        "study": spec.study_instance_uid or spec.uid("study"),
        "series": spec.series_instance_uid or spec.uid("series", spec.modality, spec.series_number),
        "frame": spec.frame_of_reference_uid or spec.uid("frame"),
    }
    common = _common(spec, uids)
    common.NumberOfSlices = array.shape[2]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(array.shape[2]):
        ds = _instance(common, spec, geometry, array[:, :, k].astype(np.float64), k)
        if spec.modality != Modality.PT.value:
            del ds.NumberOfSlices
        path = out_dir / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
