"""One test per row of the SUV decision table in ``docs/suv.md``.

Each variant is a shared reference object (oncoray DROs, cornerstone headers) with tags edited
so that it needs the row's rule: the converted SUVbw inside the DRO mask must still be min 0.20,
median 1.00 and max 4.00 (±0.5 %), and the record must name the rule used. The expected body
measures are written out here from the oncoray manual, not taken from the code under test.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from service.dicom.volume import read_volume
from service.errors import SuvError
from service.pet.body_size import SuvType
from service.pet.suv import compute_suv_factors, to_suv
from tests.service.pet.dro_variants import (
    FRAME_S,
    HALF_LIFE,
    LAM,
    T_AVE,
    W,
    ds_text,
    lean_kg,
    retime,
    scale_slope,
)
from tests.service.pet.test_suv_dro_list import CASES

pytestmark = pytest.mark.data

DOCS = Path(__file__).resolve().parents[3] / "docs" / "suv.md"


def test_r1_decay_correction_datetime(variant, dro_values) -> None:
    def edit(k: int, ds: Dataset) -> None:
        retime(ds, "110230", 0)
        ds.DecayCorrectionDateTime = "20250101110000"

    conversion = dro_values(variant("DRO_0_0", edit))
    assert conversion.scan_time_source == "DecayCorrectionDateTime (0018,9701)"


@pytest.mark.parametrize("case", ["DRO_0_0", "DRO_3_3"])
def test_r2_series_time(variant, dro_values, case: str) -> None:
    # DRO_3_3's frame times refer to its acquisition at 11:30; SeriesTime 11:00 is not after
    # it, so QIBA's first step holds and the frame timing is not used.
    conversion = dro_values(variant(case, lambda k, ds: None))
    assert conversion.scan_time_source == "SeriesDate/SeriesTime"
    assert conversion.decay_seconds == 3600


def test_r3_ge_private_datetime(variant, dro_values) -> None:
    def edit(k: int, ds: Dataset) -> None:
        retime(ds, "110230", (150 + T_AVE) * 1000)
        ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        ds.add_new(0x0009100D, "DT", "20250101110000.000000")

    conversion = dro_values(variant("DRO_0_0", edit))
    assert conversion.scan_time_source.startswith("GE private")


def test_r4_back_computed_reference(variant, dro_values, data_dir) -> None:
    # A crop that starts 150 s into the scan: the earliest AcquisitionTime is 11:02:30, but
    # FrameReferenceTime still refers to the series start at 11:00.
    def edit(k: int, ds: Dataset) -> None:
        retime(ds, "110230", (150 + T_AVE) * 1000)

    folder = variant("DRO_0_0", edit)
    conversion = dro_values(folder)
    assert conversion.scan_time_source.startswith("back-computed")
    assert conversion.factor is not None
    assert conversion.scan_datetime is not None
    assert conversion.scan_datetime.time().isoformat(timespec="seconds") == "11:00:00"
    # The earliest acquisition (QIBA step 3) would be 1.6 % off.
    assert math.exp(LAM * 150) - 1 == pytest.approx(0.0159, abs=0.0002)


def test_r5_back_computed_per_plane(variant, dro_values) -> None:
    # Two beds: the second starts at 11:05 and its values are decay-corrected to its own start,
    # so they are 2^(-300/T½) of those corrected to 11:00.
    def edit(k: int, ds: Dataset) -> None:
        if k < 10:
            retime(ds, "110000", T_AVE * 1000)
        else:
            retime(ds, "110500", T_AVE * 1000)
            scale_slope(ds, 2 ** (-300 / HALF_LIFE))

    conversion = dro_values(variant("DRO_0_0", edit))
    assert conversion.factor is None
    assert conversion.plane_scan_datetimes is not None
    assert len(set(conversion.plane_scan_datetimes)) == 2
    assert conversion.scan_time_source.endswith("per plane")


def test_r6_implausible_frame_timing(variant, dro_values) -> None:
    # FrameReferenceTime 0 would put the reference after the acquisition began.
    def edit(k: int, ds: Dataset) -> None:
        retime(ds, "110000", 0)

    conversion = dro_values(variant("DRO_0_0", edit))
    assert conversion.scan_time_source == "earliest AcquisitionDate/Time"
    assert any("frame timing unusable" in w for w in conversion.warnings)


def test_r6_shared_header_case_keeps_its_factor(suv_headers) -> None:
    conversion = compute_suv_factors(suv_headers("CPS_AND_BQML_AC_DT_-_S_DT"))
    assert conversion.scan_time_source == "earliest AcquisitionDate/Time"
    assert conversion.factor == pytest.approx(0.00026503312764157046, rel=1e-9)


def test_r7_admin(variant, dro_values) -> None:
    conversion = dro_values(variant("DRO_3_1", lambda k, ds: None))
    assert conversion.decay_seconds is None and "administration" in conversion.method


def test_r8_not_decay_corrected(variant, dro_values) -> None:
    # Values not decay-corrected are the activity averaged over each plane's own frame.
    average = -math.expm1(-LAM * FRAME_S) / (LAM * FRAME_S)

    def edit(k: int, ds: Dataset) -> None:
        ds.DecayCorrection = "NONE"
        ds.CorrectedImage = ["NORM", "DTIM", "ATTN", "SCAT", "RAN"]
        start = 0 if k < 10 else 300
        ds.AcquisitionTime = "110000" if k < 10 else "110500"
        scale_slope(ds, 2 ** (-start / HALF_LIFE) * average)

    conversion = dro_values(variant("DRO_0_0", edit))
    assert conversion.factor is None
    assert conversion.scan_time_source == "per-frame acquisition date/time"


def test_r9_philips_suv_factor(variant, dro_values) -> None:
    conversion = dro_values(variant("DRO_2_4", lambda k, ds: None))
    assert "(7053,1000)" in conversion.method


def test_r10_philips_activity_factor(variant, dro_values) -> None:
    def edit(k: int, ds: Dataset) -> None:
        ds.Units = "CNTS"
        ds.private_block(0x7053, "Philips PET Private Group", create=True)
        ds.add_new(0x70531009, "DS", "2.5")
        scale_slope(ds, 1 / 2.5)

    conversion = dro_values(variant("DRO_0_0", edit))
    assert "(7053,1009)" in conversion.method
    assert conversion.scan_time_source == "SeriesDate/SeriesTime"


def test_r12_gml_body_weight(variant, dro_values) -> None:
    def edit(k: int, ds: Dataset) -> None:
        del ds.SUVType  # empty SUVType means BW

    conversion = dro_values(variant("DRO_2_0", edit))
    assert conversion.stored_suv_type is SuvType.BW
    assert conversion.factor == 1.0


@pytest.mark.parametrize("sex", ["M", "F", "O"])
@pytest.mark.parametrize("kind", ["LBM", "LBMJAMES128", "LBMJANMA", "IBW"])
def test_r13_gml_other_suv_types(variant, dro_values, kind: str, sex: str) -> None:
    # The stored values are SUV of `kind`: SUVbw × normaliser / W.
    ratio = lean_kg(kind, sex) / W

    def edit(k: int, ds: Dataset) -> None:
        ds.SUVType = kind
        ds.PatientSex = sex
        scale_slope(ds, ratio)

    folder = variant("DRO_2_0", edit)
    conversion = dro_values(folder)
    assert conversion.stored_suv_type is SuvType.from_dicom(kind)
    assert conversion.factor == pytest.approx(1 / ratio, rel=1e-9)
    assert ("mean of the male and female" in conversion.method) == (sex == "O")
    if kind == "LBMJAMES128" and sex == "M":
        assert 1 / ratio - 1 == pytest.approx(0.2385, abs=0.001)  # read as SUVbw: 19 % low


@pytest.mark.parametrize(("case", "units"), [("DRO_0_0", None), ("DRO_2_0", "LBMJAMES128")])
def test_weight_entered_in_grams(variant, dro_values, case: str, units: str | None) -> None:
    # The manual: PatientWeight over 1000 was entered in g; divide by 1000.
    ratio = lean_kg("LBMJAMES128", "M") / W

    def edit(k: int, ds: Dataset) -> None:
        ds.PatientWeight = ds_text(W * 1000)
        if units is not None:
            ds.SUVType, ds.PatientSex = units, "M"
            scale_slope(ds, ratio)

    conversion = dro_values(variant(case, edit))
    assert any("PatientWeight 70000 read as g" in w for w in conversion.warnings)


@pytest.mark.parametrize("suv_type", ["BSA", None])
def test_r14_cm2ml_body_surface(variant, dro_values, suv_type: str | None) -> None:
    ratio = lean_kg("BSA", "O") / W  # SUVbsa / SUVbw = BSA (cm²) / W (g)

    def edit(k: int, ds: Dataset) -> None:
        ds.Units = "CM2ML"
        if suv_type is None:
            del ds.SUVType
        else:
            ds.SUVType = suv_type
        scale_slope(ds, ratio)

    conversion = dro_values(variant("DRO_2_0", edit))
    assert conversion.stored_suv_type is SuvType.BSA
    assert conversion.factor == pytest.approx(1 / ratio, rel=1e-9)


@pytest.mark.parametrize(
    ("units", "suv_type", "match"),
    [
        pytest.param("CNTS", None, r"\(7053,1000\)", id="R11"),
        pytest.param("GML", "BSA", "does not fit", id="R15-gml-bsa"),
        pytest.param("CM2ML", "LBM", "does not fit", id="R15-cm2ml-lbm"),
        pytest.param("GML", "LEAN", "defined terms", id="R15-unknown"),
        pytest.param("CPS", None, "lacks DCAL", id="R16-cps-not-dose-calibrated"),
        pytest.param("PROPCPS", None, "Units", id="R16-propcps"),
        pytest.param("PROPCNTS", None, "Units", id="R16-propcnts"),
        pytest.param("1CM", None, "Units", id="R16-1cm"),
    ],
)
def test_refused_rows(make_header, units: str, suv_type: str | None, match: str) -> None:
    header = make_header(Units=units, SUVType=suv_type)
    with pytest.raises(SuvError, match=match):
        compute_suv_factors([header])


def test_r16a_cps_dose_calibrated(variant, dro_values) -> None:
    # The manual: dose-calibrated counts per second ÷ voxel volume (4 × 4 × 4 mm) = Bq/mL.
    def edit(k: int, ds: Dataset) -> None:
        ds.Units = "CPS"
        ds.CorrectedImage = [*ds.CorrectedImage, "DCAL"]
        scale_slope(ds, 0.064)

    conversion = dro_values(variant("DRO_0_0", edit))
    assert conversion.method.startswith("CPS (DCAL) ÷ voxel volume (0.064 mL)")


@pytest.mark.parametrize("suv_type", list(SuvType))
def test_s_requested_type(variant, data_dir, suv_type: SuvType) -> None:
    # Any row then converts SUVbw to the requested type; DRO_0_0 is sex O.
    folder = variant("DRO_0_0", lambda k, ds: None)
    volume = read_volume(folder)
    bw, _ = to_suv(volume)
    other, conversion = to_suv(volume, suv_type)
    kind = suv_type.dicom_term
    expected = 1.0 if kind == "BW" else lean_kg(kind, "O") / W
    np.testing.assert_allclose(other, bw * expected, rtol=1e-6)
    assert conversion.suv_type is suv_type


def test_every_row_of_the_decision_table_has_its_test() -> None:
    text = DOCS.read_text(encoding="utf-8")
    pattern = r"^\| (R\d+[a-z]?|D\d|S) \|.*\| `(test_[a-z0-9_]+)(?:\[([^\]]+)\])?`"
    rows = re.findall(pattern, text, flags=re.M)
    assert len(rows) == 27
    names = set(globals())
    for row, test, case in rows:
        if test == "test_newer_dro_list_case":
            assert case in CASES, f"docs/suv.md row {row} names DRO case {case}, which is missing"
        else:
            assert test in names, f"docs/suv.md row {row} names {test}, which does not exist"
