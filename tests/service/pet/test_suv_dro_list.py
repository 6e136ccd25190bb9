"""Every case of the newer oncoray DRO list, rebuilt from the shared DROs by editing tags.

The list is ``docs/DRO_list.csv`` of oncoray/suv_computation at commit 17ec3b6ab395 (58 cases,
43 with values and 15 that must fail; ``docs/suv.md`` cites it). Our shared copy holds nine of
its DROs; each other case is made here from one of them as its description says, with the
RescaleSlope rescaled so that a correct conversion gives SUVbw min 0.20, median 1.00 and max
4.00 inside the DRO mask (±0.5 %), and each error case must raise an SuvError naming the tag.
Where the description leaves the encoding open (which date de-identification replaced, how a
vendor writes its frame timing), each plausible encoding is a case of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from pydicom.dataset import Dataset

from service.dicom.volume import read_volume
from service.errors import SuvError
from service.pet.suv import to_suv
from tests.service.pet.dro_variants import (
    FRAME_S,
    HALF_LIFE,
    T_AVE,
    UPTAKE_S,
    ZR89_HALF_LIFE,
    W,
    decayed_to,
    ds_text,
    frame_average,
    lean_kg,
    retime,
    scale_slope,
)

pytestmark = pytest.mark.data

Edit = Callable[[int, Dataset], None]


@dataclass(frozen=True)
class Case:
    """One DRO of the list: the shared DRO it is made from, the edit, and what must happen."""

    base: str
    edit: Edit
    error: str | None = None  # a regex the SuvError must match; None: the DRO's values
    source: str | None = None  # the start of the conversion's scan_time_source, when checked
    enhanced: bool | str = False  # True or "reference-only": as one Enhanced PET instance


def unchanged(k: int, ds: Dataset) -> None:
    """The shared DRO as it is."""


def edits(*steps: Edit) -> Edit:
    def edit(k: int, ds: Dataset) -> None:
        for step in steps:
            step(k, ds)

    return edit


def tags(**values: object) -> Edit:
    """Set (or, with None, delete) top-level and radiopharmaceutical tags on every plane."""

    def edit(k: int, ds: Dataset) -> None:
        info = ds.RadiopharmaceuticalInformationSequence[0]
        for keyword, value in values.items():
            target = info if keyword.startswith("Radio") else ds
            if value is None:
                if keyword in target:
                    delattr(target, keyword)
            else:
                setattr(target, keyword, value)

    return edit


def stored_suv(kind: str, sex: str, units: str = "GML") -> Edit:
    """Values stored as SUV of ``kind`` (SUVbw × normaliser / W) for a patient of ``sex``."""
    return edits(
        tags(Units=units, SUVType=kind, PatientSex=sex),
        lambda k, ds: scale_slope(ds, lean_kg(kind, sex) / W),
    )


def philips(suv_factor: float | None = None, activity: float | None = None) -> Edit:
    def edit(k: int, ds: Dataset) -> None:
        ds.Manufacturer = "Philips Medical Systems"
        ds.Units = "CNTS"
        ds.private_block(0x7053, "Philips PET Private Group", create=True)
        if suv_factor is not None:
            ds.add_new(0x70531000, "DS", ds_text(suv_factor))
        if activity is not None:
            ds.add_new(0x70531009, "DS", ds_text(activity))
            scale_slope(ds, 1 / activity)

    return edit


def recreated(manufacturer: str) -> Edit:
    """SeriesTime 12:00 after two beds (11:00 and 11:05), both corrected to 11:00 (DICOM)."""

    def edit(k: int, ds: Dataset) -> None:
        ds.Manufacturer = manufacturer
        offset = 0 if k < 10 else FRAME_S
        retime(ds, "110000" if k < 10 else "110500", (offset + T_AVE) * 1000)

    return edit


def recreated_ge(acquisition_per_bed: bool) -> Edit:
    """GE: FrameReferenceTime is the bed's start offset; AcquisitionTime per bed or shared."""

    def edit(k: int, ds: Dataset) -> None:
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        offset = 0 if k < 10 else FRAME_S
        acquisition = "110500" if acquisition_per_bed and k >= 10 else "110000"
        retime(ds, acquisition, offset * 1000)

    return edit


def private_datetime(manufacturer: str, tag: int, creator: str) -> Edit:
    """A re-created series whose frame timing refers to 11:30; only the private tag says 11:00."""

    def edit(k: int, ds: Dataset) -> None:
        ds.Manufacturer = manufacturer
        retime(ds, "113000", 150000)
        ds.private_block(tag >> 16, creator, create=True)
        ds.add_new(tag, "DT", "20250101110000.000000")

    return edit


def not_decay_corrected(manufacturer: str, second_bed: str = "113000") -> Edit:
    """DecayCorrection NONE: two beds, each plane the mean activity over its own frame."""
    start = (int(second_bed[:2]) - 11) * 3600 + int(second_bed[2:4]) * 60

    def edit(k: int, ds: Dataset) -> None:
        ds.Manufacturer = manufacturer
        ds.DecayCorrection = "NONE"
        ds.CorrectedImage = ["NORM", "DTIM", "ATTN", "SCAT", "RAN"]
        ds.AcquisitionTime = "110000" if k < 10 else second_bed
        seconds = UPTAKE_S + (0 if k < 10 else start)
        scale_slope(ds, decayed_to(seconds) * frame_average())

    return edit


def midnight(k: int, ds: Dataset) -> None:
    """Injection 23:30 on 31 December, values referring to 00:30 on 1 January."""
    info = ds.RadiopharmaceuticalInformationSequence[0]
    info.RadiopharmaceuticalStartTime = "233000"
    info.RadiopharmaceuticalStartDateTime = "20241231233000"
    ds.SeriesTime = ds.AcquisitionTime = ds.StudyTime = "003000"


def zirconium(uptake_h: float) -> Edit:
    """Zr-89 injected ``uptake_h`` before the values' reference, 11:00 on 1 January."""
    injected = datetime(2025, 1, 1, 11) - timedelta(hours=uptake_h)

    def edit(k: int, ds: Dataset) -> None:
        info = ds.RadiopharmaceuticalInformationSequence[0]
        info.RadionuclideHalfLife = ds_text(ZR89_HALF_LIFE)
        info.RadiopharmaceuticalStartDateTime = injected.strftime("%Y%m%d%H%M%S")
        info.RadiopharmaceuticalStartTime = injected.strftime("%H%M%S")
        scale_slope(ds, decayed_to(uptake_h * 3600, ZR89_HALF_LIFE))

    return edit


CASES: dict[str, Case] = {
    "DRO_0_0": Case("DRO_0_0", unchanged, source="SeriesDate/SeriesTime"),
    "DRO_1_0": Case("DRO_1_0", unchanged),
    "DRO_2_0": Case("DRO_2_0", unchanged),
    **{
        f"DRO_2_{group}_{i}": Case("DRO_2_0", stored_suv(kind, sex))
        for group, kind in (("1", "LBMJAMES128"), ("2", "IBW"), ("6", "LBMJANMA"))
        for i, sex in enumerate("MFO")
    },
    "DRO_2_3": Case("DRO_2_0", stored_suv("BSA", "O", units="CM2ML")),
    "DRO_2_4": Case("DRO_2_4", unchanged),
    "DRO_2_5": Case("DRO_0_0", philips(activity=2.5)),
    "DRO_3_0": Case("DRO_3_0", unchanged),
    "DRO_3_1": Case("DRO_3_1", unchanged),
    "DRO_3_2_0": Case("DRO_0_0", recreated("SIEMENS"), source="back-computed"),
    "DRO_3_2_1": Case("DRO_0_0", recreated_ge(True), source="back-computed"),
    "DRO_3_2_1-shared-acquisition-time": Case(
        "DRO_0_0", recreated_ge(False), source="back-computed"
    ),
    "DRO_3_2_2": Case("DRO_0_0", recreated("Philips Medical Systems"), source="back-computed"),
    "DRO_3_2_3": Case("DRO_0_0", recreated("Synthetic"), source="back-computed"),
    "DRO_3_3_0": Case(
        "DRO_0_0", private_datetime("SIEMENS", 0x00711022, "SIEMENS MED PT"), source="Siemens"
    ),
    "DRO_3_3_1": Case(
        "DRO_3_3", private_datetime("GE MEDICAL SYSTEMS", 0x0009100D, "GEMS_PETD_01"), source="GE"
    ),
    "DRO_3_4_0": Case("DRO_0_0", not_decay_corrected("SIEMENS")),
    "DRO_3_4_1": Case("DRO_0_0", not_decay_corrected("GE MEDICAL SYSTEMS")),
    # Philips CNTS: the activity factor, and an SUV factor right for the first bed only.
    "DRO_3_4_2": Case(
        "DRO_0_0",
        edits(
            not_decay_corrected("Philips Medical Systems"),
            philips(suv_factor=W * 1000 / (368.08e6 * 2 ** (-UPTAKE_S / HALF_LIFE)), activity=2.5),
        ),
    ),
    "DRO_3_4_3": Case("DRO_0_0", not_decay_corrected("Synthetic")),
    **{
        f"DRO_3_5_{i}": Case(
            "DRO_0_0",
            tags(Manufacturer=maker, FrameReferenceTime="0"),
            source="SeriesDate/SeriesTime",
        )
        for i, maker in enumerate(("SIEMENS", "GE MEDICAL SYSTEMS", "Philips", "Synthetic"))
    },
    "DRO_4_0": Case("DRO_4_0", unchanged),
    "DRO_4_1": Case("DRO_0_0", tags(RadiopharmaceuticalStartDateTime=None)),
    "DRO_4_2": Case("DRO_0_0", edits(midnight, tags(RadiopharmaceuticalStartDateTime=None))),
    "DRO_4_3": Case("DRO_0_0", edits(midnight, tags(RadiopharmaceuticalStartTime=None))),
    "DRO_4_4-acquisition-date-replaced": Case(
        "DRO_0_0", edits(midnight, tags(AcquisitionDate="19000101"))
    ),
    "DRO_4_4-acquisition-date-removed": Case(
        "DRO_0_0", edits(midnight, tags(AcquisitionDate=None))
    ),
    "DRO_4_4-every-scan-date-replaced": Case(
        "DRO_0_0",
        edits(
            midnight,
            tags(
                AcquisitionDate="19000101",
                SeriesDate="19000101",
                StudyDate="19000101",
                ContentDate="19000101",
            ),
        ),
    ),
    "DRO_4_5": Case("DRO_0_0", zirconium(72)),
    "DRO_5_0": Case("DRO_5_0", unchanged),
    "DRO_7_0_0": Case("DRO_0_0", unchanged, source="DecayCorrectionDateTime", enhanced=True),
    "DRO_7_1_0": Case("DRO_1_0", unchanged, enhanced=True),
    "DRO_7_2_0": Case("DRO_2_0", unchanged, enhanced=True),
    "DRO_7_3_0": Case(
        "DRO_0_0",
        tags(SeriesTime="120000"),
        source="DecayCorrectionDateTime",
        enhanced=True,
    ),
    "DRO_7_3_1": Case("DRO_0_0", not_decay_corrected("Synthetic"), enhanced=True),
    "DRO_7_3_1-frame-reference-datetime-only": Case(
        "DRO_0_0", not_decay_corrected("Synthetic"), enhanced="reference-only"
    ),
    # The cases that must fail, with the tag the message must name.
    "DRO_error_2_0": Case("DRO_0_0", tags(PatientWeight=None), error=r"PatientWeight"),
    "DRO_error_2_1": Case("DRO_0_0", tags(PatientWeight="0"), error=r"PatientWeight"),
    "DRO_error_2_2": Case(
        "DRO_2_0", edits(stored_suv("IBW", "M"), tags(PatientSex=None)), error="PatientSex"
    ),
    "DRO_error_2_3": Case(
        "DRO_2_0", edits(stored_suv("IBW", "M"), tags(PatientSex="X")), error="PatientSex"
    ),
    "DRO_error_2_4": Case(
        "DRO_2_0", edits(stored_suv("IBW", "M"), tags(PatientSize=None)), error="PatientSize"
    ),
    "DRO_error_2_5": Case(
        "DRO_2_0", edits(stored_suv("IBW", "M"), tags(PatientSize="0")), error="PatientSize"
    ),
    "DRO_error_2_6": Case("DRO_0_0", philips(), error=r"\(7053,1000\)"),
    "DRO_error_2_7": Case("DRO_0_0", tags(Units="PROPCNTS"), error=r"Units \(0054,1001\)"),
    "DRO_error_3_0": Case(
        "DRO_0_0", tags(RadionuclideTotalDose=None), error=r"RadionuclideTotalDose"
    ),
    "DRO_error_3_1": Case(
        "DRO_0_0", tags(RadionuclideTotalDose="-368080000"), error=r"RadionuclideTotalDose"
    ),
    "DRO_error_3_2": Case(
        "DRO_0_0", tags(ActualFrameDuration=None), error=r"ActualFrameDuration \(0018,1242\)"
    ),
    "DRO_error_3_2-series-recreated": Case(
        "DRO_0_0",
        edits(recreated("SIEMENS"), tags(ActualFrameDuration=None)),
        error=r"ActualFrameDuration \(0018,1242\)",
    ),
    "DRO_error_4_0": Case(
        "DRO_0_0",
        tags(RadiopharmaceuticalStartDateTime=None, RadiopharmaceuticalStartTime=None),
        error=r"RadiopharmaceuticalStartTime \(0018,1072\)",
    ),
    "DRO_error_4_1": Case(
        "DRO_0_0",
        edits(zirconium(72), tags(RadiopharmaceuticalStartDateTime=None)),
        error=r"add the injection date to RadiopharmaceuticalStartDateTime \(0018,1078\)",
    ),
    "DRO_error_4_2": Case(
        "DRO_0_0",
        edits(zirconium(72), tags(RadiopharmaceuticalStartDateTime="19000101080000")),
        error=r"add the injection date to RadiopharmaceuticalStartDateTime \(0018,1078\)",
    ),
    "DRO_error_5_0": Case(
        "DRO_0_0", tags(RadionuclideHalfLife=None), error=r"RadionuclideHalfLife \(0018,1075\)"
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_newer_dro_list_case(variant, dro_values, name: str) -> None:
    case = CASES[name]
    folder = variant(case.base, case.edit, enhanced_pet=case.enhanced)
    if case.error is not None:
        with pytest.raises(SuvError, match=case.error):
            to_suv(read_volume(folder))
        return
    conversion = dro_values(folder)
    if case.source is not None:
        assert (conversion.scan_time_source or "").startswith(case.source)


def test_every_row_of_the_list_has_a_case() -> None:
    # The 58 IDs of docs/DRO_list.csv at oncoray/suv_computation 17ec3b6ab395.
    listed = (
        ["DRO_0_0", "DRO_1_0", "DRO_2_0", "DRO_2_3", "DRO_2_4", "DRO_2_5", "DRO_3_0", "DRO_3_1"]
        + [f"DRO_2_{g}_{i}" for g in "126" for i in range(3)]
        + [f"DRO_3_{g}_{i}" for g in "245" for i in range(4)]
        + ["DRO_3_3_0", "DRO_3_3_1", "DRO_5_0"]
        + [f"DRO_4_{i}" for i in range(6)]
        + ["DRO_7_0_0", "DRO_7_1_0", "DRO_7_2_0", "DRO_7_3_0", "DRO_7_3_1"]
        + [f"DRO_error_2_{i}" for i in range(8)]
        + [f"DRO_error_3_{i}" for i in range(3)]
        + [f"DRO_error_4_{i}" for i in range(3)]
        + ["DRO_error_5_0"]
    )
    assert len(set(listed)) == 58
    covered = {name.split("-")[0] for name in CASES}
    assert set(listed) <= covered
