"""Variants of the shared oncoray DROs, made by editing tags, and what their values must be.

Every DRO: 70 kg, 1.75 m, sex O, F-18 (6586.2 s) 368.08 MBq injected 10:00, values
decay-corrected to 11:00, 300 s frames, 20 planes of 4 mm voxels. Inside the DRO mask its
SUVbw are min 0.20, median 1.00, max 4.00. A variant that changes when the values refer to,
the nuclide or the dose rescales each plane's RescaleSlope so that a correct conversion still
gives those values; the expected factors are written out here, not taken from the code.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

W, H, HALF_LIFE, FRAME_S = 70.0, 175.0, 6586.2, 300.0
LAM = math.log(2) / HALF_LIFE
T_AVE = math.log(LAM * FRAME_S / -math.expm1(-LAM * FRAME_S)) / LAM
#: Seconds from injection (10:00) to the values' reference (11:00) in every shared DRO.
UPTAKE_S = 3600.0
ZR89_HALF_LIFE = 78.41 * 3600
Edit = Callable[[int, Dataset], None]
ENHANCED_PET = "1.2.840.10008.5.1.4.1.1.130"


def ds_text(value: float) -> str:
    """A DS value of at most 16 characters."""
    return f"{value:.10g}"


def lean_kg(kind: str, sex: str) -> float:
    """The manual's normalisers (kg; BSA in m² × 10, i.e. cm² / 1000 as W is in kg)."""
    ratio = (W / H) ** 2
    bmi = W / (H / 100) ** 2
    male = {
        "LBM": 1.10 * W - 120 * ratio,
        "LBMJAMES128": 1.10 * W - 128 * ratio,
        "LBMJANMA": 9270 * W / (6680 + 216 * bmi),
        "IBW": 48.0 + 1.06 * (H - 152),
    }
    female = {
        "LBM": 1.07 * W - 148 * ratio,
        "LBMJAMES128": 1.07 * W - 148 * ratio,
        "LBMJANMA": 9270 * W / (8780 + 244 * bmi),
        "IBW": 45.5 + 0.91 * (H - 152),
    }
    if kind == "BSA":
        return 0.007184 * W**0.425 * H**0.725 * 1e4 / 1000  # cm² per 1000, so W/x is unitless
    if sex == "O":
        return (male[kind] + female[kind]) / 2
    return male[kind] if sex == "M" else female[kind]


def scale_slope(ds: Dataset, factor: float) -> None:
    """Multiply a plane's RescaleSlope (its Bq/mL, counts or SUV) by ``factor``."""
    ds.RescaleSlope = ds_text(float(ds.RescaleSlope) * factor)


def retime(ds: Dataset, acquisition: str, frame_reference_ms: float) -> None:
    """A re-created series: SeriesTime 12:00, after every acquisition."""
    ds.SeriesTime = "120000"
    ds.AcquisitionTime = acquisition
    ds.FrameReferenceTime = ds_text(frame_reference_ms)


def decayed_to(seconds: float, half_life: float = HALF_LIFE) -> float:
    """How a plane's Bq/mL change when its values refer to ``seconds`` after the injection."""
    return 2 ** (-seconds / half_life) / 2 ** (-UPTAKE_S / HALF_LIFE)


def frame_average(duration_s: float = FRAME_S) -> float:
    """Mean fraction of the activity at a frame's start that is left over the frame."""
    return -math.expm1(-LAM * duration_s) / (LAM * duration_s)


def enhanced(planes: list[Dataset], reference_only: bool = False) -> Dataset:
    """One Enhanced PET instance holding the planes as frames, timing in the functional groups.

    Units, CorrectedImage, DecayCorrection and the per-plane geometry, slope and timing move
    to where Enhanced PET keeps them (RescaleType, the YES/NO flags, DecayCorrectionDateTime,
    the per-frame and shared functional groups). Frames not decay-corrected also get their
    FrameReferenceDateTime (start + T_ave); ``reference_only`` drops FrameAcquisitionDateTime.
    """
    first = planes[0]
    ds = copy.deepcopy(first)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_PET
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.NumberOfFrames = len(planes)
    date = str(first.SeriesDate)
    corrected = {str(v) for v in first.CorrectedImage}
    ds.AttenuationCorrected = "YES" if "ATTN" in corrected else "NO"
    ds.DecayCorrected = "YES" if str(first.DecayCorrection) != "NONE" else "NO"
    if ds.DecayCorrected == "YES":
        # The shared DROs are corrected to their acquisition start (SeriesTime may be edited).
        ds.DecayCorrectionDateTime = date + min(str(p.AcquisitionTime) for p in planes)
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([_item(PixelSpacing=first.PixelSpacing)])
    shared.PixelMeasuresSequence[0].SliceThickness = first.SliceThickness
    shared.PlaneOrientationSequence = Sequence(
        [_item(ImageOrientationPatient=first.ImageOrientationPatient)]
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [_frame(p, date, reference_only) for p in planes]
    )
    for keyword in (
        "Units", "CorrectedImage", "DecayCorrection", "RescaleSlope", "RescaleIntercept",
        "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
        "AcquisitionTime", "AcquisitionDate", "FrameReferenceTime", "ActualFrameDuration",
    ):  # fmt: skip
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = np.stack([p.pixel_array for p in planes]).tobytes()
    return ds


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _frame(plane: Dataset, date: str, reference_only: bool) -> Dataset:
    start = datetime.strptime(date + str(plane.AcquisitionTime)[:6], "%Y%m%d%H%M%S")
    content = _item(FrameAcquisitionDuration=plane.ActualFrameDuration)
    if not reference_only:
        content.FrameAcquisitionDateTime = start.strftime("%Y%m%d%H%M%S")
    if str(plane.DecayCorrection) == "NONE":
        reference = start + timedelta(seconds=T_AVE)
        content.FrameReferenceDateTime = reference.strftime("%Y%m%d%H%M%S.%f")
    group = Dataset()
    group.FrameContentSequence = Sequence([content])
    group.PlanePositionSequence = Sequence([_item(ImagePositionPatient=plane.ImagePositionPatient)])
    group.PixelValueTransformationSequence = Sequence(
        [
            _item(
                RescaleSlope=plane.RescaleSlope,
                RescaleIntercept=plane.get("RescaleIntercept", "0"),
                RescaleType=str(plane.Units),
            )
        ]
    )
    return group
