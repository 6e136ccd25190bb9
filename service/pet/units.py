"""What PET pixel values hold: Units (0054,1001), the corrections applied, vendor scale factors.

Each function reads one header (of one plane) and raises :class:`~service.errors.SuvError`
naming the tag when the value cannot be used. ``docs/suv.md`` states which units fedseg
converts and why the others are refused.
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from service.dicom.defined_terms import DecayCorrection, PetUnits
from service.errors import SuvError
from service.pet.reference_times import functional_group, has_value
from service.pet.times import tag_text

PHILIPS_SUV_FACTOR = Tag(0x7053, 0x1000)
PHILIPS_ACTIVITY_FACTOR = Tag(0x7053, 0x1009)

#: The units fedseg converts to SUV; the others are refused with the reason.
CONVERTIBLE_UNITS = (PetUnits.BQML, PetUnits.CNTS, PetUnits.GML, PetUnits.CM2ML, PetUnits.CPS)


def pet_units(ds: Dataset) -> PetUnits:
    """Units (0054,1001), or the Enhanced PET RescaleType; SuvError for units fedseg refuses."""
    text = str(ds.get("Units", "")).strip().upper()
    if not text:
        # Enhanced PET: RescaleType, per frame where the slope varies (one unit per series).
        first_frame = 1 if ds.get("PerFrameFunctionalGroupsSequence") else None
        transform = functional_group(ds, "PixelValueTransformationSequence", first_frame)
        text = str(transform.get("RescaleType", "")).strip().upper() if transform else ""
    if not text:
        raise SuvError("Units (0054,1001) is missing; the PET values cannot be interpreted")
    units = next((u for u in CONVERTIBLE_UNITS if u.value == text), None)
    if units is None:
        raise SuvError(
            f"Units (0054,1001) is {text!r}; fedseg converts BQML, CNTS (Philips), GML, CM2ML "
            "and dose-calibrated CPS to SUV (the oncoray SUV manual finds no sound conversion "
            "of the others)"
        )
    return units


def decay_correction(ds: Dataset) -> DecayCorrection:
    """DecayCorrection (0054,1102), or what Enhanced PET's DecayCorrected flag implies."""
    text = str(ds.get("DecayCorrection", "")).strip().upper()
    if not text and str(ds.get("DecayCorrected", "")).upper() == "NO":
        return DecayCorrection.NONE  # Enhanced PET states it as a flag
    if not text and has_value(ds, "DecayCorrectionDateTime"):
        return DecayCorrection.START
    try:
        return DecayCorrection(text)
    except ValueError as exc:
        raise SuvError(
            f"DecayCorrection (0054,1102) is {text!r}; expected START, ADMIN or NONE"
        ) from exc


def corrections(ds: Dataset) -> set[str]:
    """The corrections applied: CorrectedImage (0028,0051), or Enhanced PET's YES/NO flags."""
    values = ds.get("CorrectedImage", []) or []
    # A single value comes back as a plain string, not a one-item list.
    values = [values] if isinstance(values, str) else values
    applied = {str(v).strip().upper() for v in values}
    if str(ds.get("AttenuationCorrected", "")).upper() == "YES":
        applied.add("ATTN")
    if str(ds.get("DecayCorrected", "")).upper() == "YES":
        applied.add("DECY")
    return applied


def check_corrections(ds: Dataset, decay: DecayCorrection) -> None:
    """SuvError unless the values are attenuation-corrected (and decay-corrected unless NONE)."""
    applied = corrections(ds)
    needed = ["ATTN"] if decay is DecayCorrection.NONE else ["ATTN", "DECY"]
    missing = [code for code in needed if code not in applied]
    if missing:
        raise SuvError(
            f"CorrectedImage (0028,0051) lacks {' and '.join(missing)} "
            f"(has {', '.join(sorted(applied)) or 'nothing'}); SUV needs attenuation- and "
            "decay-corrected images"
        )


def private_float(ds: Dataset, tag: int) -> float | None:
    """A positive numeric private element, whatever VR it was read with (DS, FD or UN bytes)."""
    if tag not in ds:
        return None
    value = ds[tag].value
    if isinstance(value, bytes):
        value = tag_text(value).split("\\")[0]
    try:
        number = float(value[0] if isinstance(value, list | tuple) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def cps_voxel_volume_ml(ds: Dataset, frame: int | None) -> float:
    """The voxel volume (mL) that turns dose-calibrated CPS values into Bq/mL.

    The oncoray SUV manual ("Units = CPS"): counts per second of a dose-calibrated image (DCAL
    in CorrectedImage) are divided by the voxel volume, from PixelSpacing (0028,0030) and
    SliceThickness (0018,0050). Without DCAL it multiplies by DoseCalibrationFactor
    (0054,1322) first, but DICOM defines that factor as already giving Bq/mL, so the two
    disagree by the voxel volume: fedseg refuses such images.

    Raises
    ------
    SuvError
        If the image is not dose-calibrated or the voxel size is missing.
    """
    if "DCAL" not in corrections(ds):
        raise SuvError(
            "Units (0054,1001) are CPS but CorrectedImage (0028,0051) lacks DCAL: the counts "
            "are not dose-calibrated, and the manual's conversion with DoseCalibrationFactor "
            "(0054,1322) contradicts DICOM's definition of that factor; export the series in "
            "BQML"
        )
    measures = functional_group(ds, "PixelMeasuresSequence", frame) or ds
    try:
        row, column = (float(v) for v in measures.PixelSpacing)
        thickness = float(measures.SliceThickness)
    except (AttributeError, TypeError, ValueError) as exc:
        raise SuvError(
            "Units (0054,1001) are CPS, but PixelSpacing (0028,0030) or SliceThickness "
            "(0018,0050) is missing; the voxel volume that turns CPS into Bq/mL is unknown"
        ) from exc
    volume = row * column * thickness / 1000.0
    if not (math.isfinite(volume) and volume > 0):
        raise SuvError(
            f"PixelSpacing (0028,0030) × SliceThickness (0018,0050) is {volume * 1000:g} mm³; "
            "the voxel volume must be positive"
        )
    return volume
