"""Standardised uptake values from PET headers: QIBA's procedure and the oncoray SUV manual.

:func:`compute_suv_factors` turns the headers of one PET series (one per image plane) into one
multiplicative factor per plane; :func:`to_suv` applies them to a :class:`Volume`, whose values
already carry each plane's RescaleSlope/Intercept. ``docs/suv.md`` states the decision table
(units × SUVType × decay correction × reference time); in short:

* CorrectedImage (0028,0051) must hold ATTN, and DECY unless DecayCorrection is NONE.
* Units BQML, DecayCorrection START: the dose is decayed from the injection to the scan
  reference (:func:`~service.pet.reference_times.scan_reference`): DecayCorrectionDateTime,
  else SeriesDate/Time unless it is after the earliest acquisition (QIBA), else GE's or
  Siemens' private datetime, else the reference back-computed from each plane's
  AcquisitionTime, FrameReferenceTime and ActualFrameDuration (GE: the bed start; per plane
  when planes differ), else the earliest acquisition. Non-GE START series need every plane's
  frame duration.
* DecayCorrection ADMIN: the images are corrected to the injection; no decay.
* DecayCorrection NONE: each plane is decayed to its own acquisition start, averaged over its
  frame duration (exact for values that are frame averages).
* The injection (:func:`~service.pet.injection.injection_datetime`): the start datetime, or a
  time of day when that is unambiguous for the radionuclide.
* Units CNTS: Philips private SUV factor (7053,1000), else the activity concentration factor
  (7053,1009) to Bq/mL (RescaleSlope is already applied to the values) and then as BQML; the
  activity factor first when DecayCorrection is NONE. For BQML the Philips factors are ignored.
* Units CPS of a dose-calibrated image (DCAL): divided by the voxel volume to Bq/mL.
* Units GML hold the SUV type SUVType (0054,1006) names (BW when empty), CM2ML hold SUVbsa:
  they are converted back to SUVbw (× W / normaliser) and from there to the requested type.

Any missing or absurd input raises :class:`~service.errors.SuvError` naming the tag.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset

from service.dicom.defined_terms import DecayCorrection, PatientSex, PetUnits
from service.dicom.volume import Volume
from service.errors import SuvError
from service.pet.body_size import BodySize, Normaliser, SuvType
from service.pet.injection import MAX_HALF_LIVES, injection_datetime
from service.pet.reference_times import (
    acquisition_datetime,
    frame_duration_ms,
    frame_reference_datetime,
    has_value,
    is_ge,
    radiopharmaceutical,
    scan_reference,
)
from service.pet.times import decay_factor, frame_average_decay
from service.pet.units import (
    PHILIPS_ACTIVITY_FACTOR,
    PHILIPS_SUV_FACTOR,
    check_corrections,
    cps_voxel_volume_ml,
    decay_correction,
    pet_units,
    private_float,
)

logger = logging.getLogger(__name__)

#: Doses below this many "Bq" are taken to be in MBq (20 GBq would never be injected).
_MBQ_THRESHOLD = 2e4
#: Weights above this many "kg" were entered in g (oncoray SUV manual, "Patient's weight").
_GRAM_THRESHOLD = 1000.0


@dataclass(frozen=True)
class SuvConversion:
    """How a PET series was converted to SUV: one factor per plane and what it came from."""

    suv_type: SuvType
    units: PetUnits
    decay_correction: DecayCorrection | None
    factors: np.ndarray  # multiply plane k's rescaled values by factors[k]
    method: str  # which rule gave the factors
    injection_datetime: datetime | None = None
    scan_datetime: datetime | None = None  # the decay reference, when all planes share one
    scan_time_source: str | None = None
    injected_dose_bq: float | None = None
    half_life_s: float | None = None
    normaliser: float | None = None  # body measure in g (cm² for SUVbsa)
    warnings: tuple[str, ...] = field(default_factory=tuple)
    stored_suv_type: SuvType | None = None  # what GML/CM2ML values hold (SUVType (0054,1006))
    plane_scan_datetimes: tuple[datetime, ...] | None = None  # when planes have their own

    def __post_init__(self) -> None:
        factors = np.asarray(self.factors, dtype=np.float64)
        if factors.ndim != 1 or factors.size == 0:
            raise ValueError("SuvConversion needs one factor per plane")
        if not np.all(np.isfinite(factors)) or np.any(factors <= 0):
            raise SuvError(f"SUV factors must be finite and positive, got {factors[:3]}...")
        object.__setattr__(self, "factors", factors)

    @property
    def factor(self) -> float | None:
        """The one factor of every plane, or None when planes differ."""
        first = float(self.factors[0])
        return first if np.allclose(self.factors, first, rtol=1e-12, atol=0) else None

    @property
    def decay_seconds(self) -> float | None:
        """Seconds from injection to the decay reference, when both are known."""
        if self.injection_datetime is None or self.scan_datetime is None:
            return None
        return (self.scan_datetime - self.injection_datetime).total_seconds()

    def describe(self) -> dict[str, object]:
        """Plain data for ``fedseg suv --json`` (no patient identifiers)."""
        single = self.factor
        return {
            "suv_type": self.suv_type.value,
            "suv_unit": self.suv_type.unit,
            "units": self.units.value,
            "stored_suv_type": self.stored_suv_type.value if self.stored_suv_type else None,
            "decay_correction": self.decay_correction.value if self.decay_correction else None,
            "method": self.method,
            "factor": single,
            "factors": None if single is not None else [float(f) for f in self.factors],
            "injection_datetime": _iso(self.injection_datetime),
            "scan_datetime": _iso(self.scan_datetime),
            "scan_datetimes": (
                [_iso(t) for t in self.plane_scan_datetimes] if self.plane_scan_datetimes else None
            ),
            "scan_time_source": self.scan_time_source,
            "decay_seconds": self.decay_seconds,
            "injected_dose_bq": self.injected_dose_bq,
            "half_life_s": self.half_life_s,
            "normaliser": self.normaliser,
            "warnings": list(self.warnings),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _float(ds: Dataset, keyword: str, tag: str) -> float:
    if not has_value(ds, keyword):
        raise SuvError(f"{keyword} {tag} is missing or empty; it is required for SUV")
    try:
        return float(ds[keyword].value)
    except (TypeError, ValueError) as exc:
        raise SuvError(f"{keyword} {tag} is {ds[keyword].value!r}, not a number") from exc


def _body_size(ds: Dataset, warnings: list[str]) -> BodySize:
    """Weight, height and sex; a weight entered in g is read as such, noted in ``warnings``."""
    weight = _float(ds, "PatientWeight", "(0010,1030)")
    if weight <= 0:
        raise SuvError(f"PatientWeight (0010,1030) is {weight:g}; a positive weight is required")
    if weight > _GRAM_THRESHOLD:
        warnings.append(f"PatientWeight {weight:g} read as g (more than {_GRAM_THRESHOLD:g} kg)")
        weight /= 1000.0
    height = float(ds.PatientSize) if has_value(ds, "PatientSize") else None
    if height is not None and height <= 0:
        height = None
    sex_text = str(ds.get("PatientSex", "")).strip().upper()
    sex = PatientSex(sex_text) if sex_text in {s.value for s in PatientSex} else None
    return BodySize(weight_kg=weight, height_m=height, sex=sex)


def _check_one_series(headers: Sequence[Dataset]) -> None:
    keys = ("Units", "DecayCorrection", "PatientWeight", "SeriesDate", "SeriesTime")
    first = headers[0]
    for ds in headers[1:]:
        if ds is first:
            continue
        for key in keys:
            if str(ds.get(key, "")) != str(first.get(key, "")):
                raise SuvError(
                    f"{key} differs between planes ({first.get(key)!r} vs {ds.get(key)!r}); "
                    "pass the planes of one PET series"
                )


def compute_suv_factors(
    headers: Sequence[Dataset],
    suv_type: SuvType = SuvType.BW,
    frame_numbers: Sequence[int | None] | None = None,
) -> SuvConversion:
    """Compute the factor that turns each plane's rescaled values into SUVs of ``suv_type``.

    Parameters
    ----------
    headers
        One header per plane, in plane order (``Volume.headers``); planes of one multi-frame
        instance share one header.
    suv_type
        What the activity is normalised by.
    frame_numbers
        1-based frame of each plane in a multi-frame instance (``Volume.slices[k].frame_number``),
        None for single-frame planes; needed only for per-frame times (DecayCorrection NONE).

    Raises
    ------
    SuvError
        If a required tag is missing or absurd; the message names it.
    """
    if not headers:
        raise SuvError("no PET headers given")
    suv_type = SuvType(suv_type)
    frames: list[int | None] = (
        list(frame_numbers) if frame_numbers is not None else [None] * len(headers)
    )
    if len(frames) != len(headers):
        raise ValueError("frame_numbers must have one entry per header")
    _check_one_series(headers)
    ds = headers[0]
    units = pet_units(ds)
    if units in (PetUnits.GML, PetUnits.CM2ML):
        return _already_suv(headers, units, suv_type)
    decay = decay_correction(ds)
    check_corrections(ds, decay)
    if units is PetUnits.CNTS:
        return _from_counts(headers, frames, decay, suv_type)
    if units is not PetUnits.CPS:
        return _from_activity(headers, frames, decay, suv_type)
    pairs = zip(headers, frames, strict=True)
    volumes = np.array([cps_voxel_volume_ml(h, f) for h, f in pairs])
    conversion = _from_activity(headers, frames, decay, suv_type)
    sizes = ", ".join(f"{v:g}" for v in sorted(set(volumes.round(6)))[:3])
    method = f"CPS (DCAL) ÷ voxel volume ({sizes} mL) → Bq/mL, " + conversion.method
    return dataclasses.replace(conversion, factors=conversion.factors / volumes, method=method)


def _from_counts(
    headers: Sequence[Dataset], frames: list[int | None], decay: DecayCorrection, suv_type: SuvType
) -> SuvConversion:
    """Philips CNTS: the SUV scale factor (7053,1000) or the activity factor (7053,1009).

    The SUV factor comes first (QIBA's pseudo-code; the shared reference values need it),
    except for values not decay-corrected, where each plane needs its own decay and fedseg
    derives it from the activity factor and the plane's timing (the manual's newer diagram
    tries the activity factor first always; ``docs/suv.md`` says where that differs).
    """
    philips = [private_float(h, PHILIPS_SUV_FACTOR) for h in headers]
    activity = [private_float(h, PHILIPS_ACTIVITY_FACTOR) for h in headers]
    has_suv = all(f is not None for f in philips)
    has_activity = all(f is not None for f in activity)
    if has_suv and not (has_activity and decay is DecayCorrection.NONE):
        return _philips_suv(headers, philips, decay, suv_type)  # type: ignore[arg-type]
    if not has_activity:
        raise SuvError(
            "Units (0054,1001) are CNTS but neither the Philips SUV scale factor (7053,1000) "
            "nor the activity concentration factor (7053,1009) is present and positive; "
            "export the series in BQML"
        )
    conversion = _from_activity(headers, frames, decay, suv_type)
    scaled = conversion.factors * np.asarray(activity, dtype=np.float64)
    method = "CNTS × (7053,1009) → Bq/mL, " + conversion.method
    return dataclasses.replace(conversion, factors=scaled, method=method)


def stored_suv_type(ds: Dataset, units: PetUnits) -> SuvType:
    """What GML or CM2ML values hold: SUVType (0054,1006), BW (GML) or BSA (CM2ML) when empty.

    Raises
    ------
    SuvError
        If SUVType is not a defined term or does not fit the units (BSA is in cm²/mL).
    """
    text = str(ds.get("SUVType", "") or "").strip().upper()
    if not text:
        return SuvType.BSA if units is PetUnits.CM2ML else SuvType.BW
    stored = SuvType.from_dicom(text)
    if (stored is SuvType.BSA) != (units is PetUnits.CM2ML):
        raise SuvError(
            f"SUVType (0054,1006) {text} does not fit Units (0054,1001) {units.value}: SUVbsa "
            "is in CM2ML, every other SUV type in GML; correct one of them"
        )
    return stored


def _already_suv(headers: Sequence[Dataset], units: PetUnits, suv_type: SuvType) -> SuvConversion:
    """Stored SUVs back to SUVbw (× W / normaliser), and from there to ``suv_type``."""
    stored = stored_suv_type(headers[0], units)
    n = len(headers)
    if suv_type is stored:
        return SuvConversion(
            suv_type,
            units,
            None,
            np.ones(n),
            f"values are SUV{stored.value} already (SUVType {stored.dicom_term})",
            stored_suv_type=stored,
        )
    warnings: list[str] = []
    body = _body_size(headers[0], warnings)
    _log(warnings)
    source = body.normaliser(stored)
    target = body.normaliser(suv_type)
    notes = "; ".join(dict.fromkeys(n for n in (source.note, target.note) if n))
    steps = [f"stored SUV{stored.value} (SUVType {stored.dicom_term})"]
    if stored is not SuvType.BW:
        steps.append(f"× W / {stored.dicom_term} → SUVbw")
    if suv_type is not SuvType.BW:
        steps.append(f"× {suv_type.dicom_term} / W → SUV{suv_type.value}")
    method = ", ".join(steps)
    return SuvConversion(
        suv_type,
        units,
        None,
        np.full(n, target.value / source.value),
        method + (f" ({notes})" if notes else ""),
        normaliser=target.value,
        stored_suv_type=stored,
        warnings=tuple(warnings),
    )


def _philips_suv(
    headers: Sequence[Dataset], philips: list[float], decay: DecayCorrection, suv_type: SuvType
) -> SuvConversion:
    factors = np.asarray(philips, dtype=np.float64)
    method = "Philips private SUV scale factor (7053,1000)"
    normaliser = None
    warnings: list[str] = []
    if suv_type is not SuvType.BW:
        body = _body_size(headers[0], warnings)
        _log(warnings)
        target = body.normaliser(suv_type)
        normaliser = target.value
        factors = factors * normaliser / body.normaliser_g(SuvType.BW)
        method += f", × {suv_type.dicom_term} / W → SUV{suv_type.value}" + _note(target)
    return SuvConversion(
        suv_type,
        PetUnits.CNTS,
        decay,
        factors,
        method,
        normaliser=normaliser,
        warnings=tuple(warnings),
    )


def _log(warnings: list[str]) -> None:
    for warning in warnings:
        logger.warning("SUV: %s", warning)


def _note(normaliser: Normaliser) -> str:
    return f" ({normaliser.note})" if normaliser.note else ""


def _dose_and_half_life(ds: Dataset, decay: DecayCorrection) -> tuple[float, float, list[str]]:
    info = radiopharmaceutical(ds)
    warnings = []
    dose = _float(info, "RadionuclideTotalDose", "(0018,1074)")
    if dose <= 0:
        raise SuvError(
            f"RadionuclideTotalDose (0018,1074) is {dose:g}; the injected dose must be positive"
        )
    if dose < _MBQ_THRESHOLD:
        warnings.append(f"RadionuclideTotalDose {dose:g} read as MBq (too small for Bq)")
        dose *= 1e6
    half_life = float("nan")
    if decay is not DecayCorrection.ADMIN:
        half_life = _float(info, "RadionuclideHalfLife", "(0018,1075)")
        if half_life <= 0:
            raise SuvError(
                f"RadionuclideHalfLife (0018,1075) is {half_life:g}; it must be positive"
            )
    return dose, half_life, warnings


def _from_activity(
    headers: Sequence[Dataset],
    frames: list[int | None],
    decay: DecayCorrection,
    suv_type: SuvType,
) -> SuvConversion:
    """Factors for values in Bq/mL (BQML, or CNTS scaled by the Philips activity factor)."""
    ds = headers[0]
    body_notes: list[str] = []
    target = _body_size(ds, body_notes).normaliser(suv_type)
    normaliser = target.value
    dose, half_life, warnings = _dose_and_half_life(ds, decay)
    warnings = body_notes + warnings
    common = {
        "suv_type": suv_type,
        "units": pet_units(ds),
        "decay_correction": decay,
        "injected_dose_bq": dose,
        "normaliser": normaliser,
    }
    if decay is DecayCorrection.ADMIN:
        factors = np.full(len(headers), normaliser / dose)
        _log(warnings)
        return SuvConversion(
            factors=factors,
            method="decay-corrected to administration: no further decay" + _note(target),
            warnings=tuple(warnings),
            **common,  # type: ignore[arg-type]
        )
    if decay is DecayCorrection.START:
        _require_frame_durations(headers, frames)
    reference = scan_reference(headers, frames, half_life)
    warnings += reference.warnings
    injection, injection_warnings = injection_datetime(ds, reference.earliest, half_life)
    warnings += injection_warnings
    if decay is DecayCorrection.NONE:
        factors = _per_frame_factors(headers, frames, injection, dose, half_life, normaliser)
        method = "not decay-corrected: dose decayed to each frame's acquisition"
        scan, planes, source = None, None, "per-frame acquisition date/time"
    else:
        seconds = [(t - injection).total_seconds() for t in reference.times]
        for extreme in sorted({min(seconds), max(seconds)}):
            _check_decay_time(extreme, half_life, warnings)
        factors = np.array([normaliser / (dose * decay_factor(t, half_life)) for t in seconds])
        method = "decay-corrected to scan start: dose decayed from injection to scan"
        scan, source = reference.single, reference.source
        planes = None if scan is not None else reference.times
    _log(warnings)
    return SuvConversion(
        factors=factors,
        method=method + _note(target),
        injection_datetime=injection,
        scan_datetime=scan,
        scan_time_source=source,
        half_life_s=half_life,
        warnings=tuple(warnings),
        plane_scan_datetimes=planes,
        **common,  # type: ignore[arg-type]
    )


def _check_decay_time(seconds: float, half_life: float, warnings: list[str]) -> None:
    if seconds < 0:
        raise SuvError(
            f"scan time is {-seconds:.0f} s before RadiopharmaceuticalStartDateTime/Time "
            "(0018,1078)/(0018,1072); check the injection and series times"
        )
    if seconds > MAX_HALF_LIVES * half_life:
        raise SuvError(
            f"{seconds / 3600:.1f} h between injection (0018,1078)/(0018,1072) and scan is more "
            f"than {MAX_HALF_LIVES:g} half-lives; check the injection date and time"
        )
    if seconds > 24 * 3600:
        warnings.append(f"{seconds / 3600:.1f} h between injection and scan")


def _require_frame_durations(headers: Sequence[Dataset], frames: list[int | None]) -> None:
    """SuvError unless every plane of a START series has its frame duration (GE excepted).

    ActualFrameDuration (0018,1242) is Type 1 in the PET Image module, and the manual's
    reference time is back-computed from it; the manual's newer DRO list expects an error
    without it unless the series is GE's (whose FrameReferenceTime is the bed start and needs
    no duration) or states DecayCorrectionDateTime (0018,9701), as Enhanced PET does.
    """
    if is_ge(headers[0]) or has_value(headers[0], "DecayCorrectionDateTime"):
        return
    for k, (ds, frame) in enumerate(zip(headers, frames, strict=True)):
        if not frame_duration_ms(ds, frame) > 0:
            raise SuvError(
                f"plane {k}: ActualFrameDuration (0018,1242) is missing or not positive; the "
                "PET Image module requires it and the SUV reference time depends on it "
                "(oncoray SUV manual); export the series again with its frame timing"
            )


def _per_frame_factors(
    headers: Sequence[Dataset],
    frames: list[int | None],
    injection: datetime,
    dose: float,
    half_life: float,
    normaliser: float,
) -> np.ndarray:
    """DecayCorrection NONE: each plane's dose decayed to when its values were measured."""
    factors = np.empty(len(headers))
    for k, (ds, frame) in enumerate(zip(headers, frames, strict=True)):
        start = acquisition_datetime(ds, frame)
        duration_ms = frame_duration_ms(ds, frame)
        if start is not None and duration_ms > 0:
            # The values are the activity averaged over the frame: the decay must be too.
            seconds = (start - injection).total_seconds()
            _check_decay_time(seconds, half_life, [])
            decayed = frame_average_decay(seconds, duration_ms / 1000, half_life)
        elif (reference := frame_reference_datetime(ds, frame)) is not None:
            seconds = (reference - injection).total_seconds()
            _check_decay_time(seconds, half_life, [])
            decayed = decay_factor(seconds, half_life)
        else:
            raise SuvError(
                f"plane {k}: AcquisitionDate/Time (0008,0022)/(0008,0032) or "
                "ActualFrameDuration (0018,1242) missing or not positive (and no "
                "FrameReferenceDateTime (0018,9151)); with DecayCorrection NONE every frame "
                "needs its acquisition time and duration"
            )
        factors[k] = normaliser / (dose * decayed)
    return factors


def suv_conversion(volume: Volume, suv_type: SuvType = SuvType.BW) -> SuvConversion:
    """How ``volume`` converts to SUVs of ``suv_type``, from its headers alone (no pixel work).

    Raises
    ------
    SuvError
        If the volume is not PET, a tag is missing or absurd, or per-plane factors differ on a
        volume that was resampled off its source planes.
    """
    if volume.modality != "PT":
        raise SuvError(
            f"series {volume.series_instance_uid} is {volume.modality}, not PET (PT); "
            "SUV applies to PET only"
        )
    frames = [s.frame_number for s in volume.slices]
    conversion = compute_suv_factors(volume.headers, suv_type, frames)
    if conversion.factor is None and not (
        volume.on_source_grid and len(conversion.factors) == volume.shape[2]
    ):
        raise SuvError(
            f"series {volume.series_instance_uid}: SUV factors differ between planes and the "
            "volume was resampled; read it with geometry policy 'strict' or fix the geometry"
        )
    return conversion


def to_suv(volume: Volume, suv_type: SuvType = SuvType.BW) -> tuple[np.ndarray, SuvConversion]:
    """Convert a PET volume to SUVs of ``suv_type``.

    Returns
    -------
    tuple
        The SUV array (float32, same grid as ``volume``) and the conversion record.

    Raises
    ------
    SuvError
        As :func:`suv_conversion`.
    """
    conversion = suv_conversion(volume, suv_type)
    values = volume.array.astype(np.float64)
    if conversion.factor is not None:
        values *= conversion.factor
    else:
        values *= conversion.factors[np.newaxis, np.newaxis, :]
    return values.astype(np.float32), conversion
