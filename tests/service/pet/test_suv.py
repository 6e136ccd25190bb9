"""SUV conversion: vendor header cases, DROs, real raw PET, and every refused input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydicom.dataset import Dataset

from service.dicom.volume import read_volume
from service.errors import SuvError
from service.masks import load_regions
from service.pet.body_size import SuvType
from service.pet.suv import compute_suv_factors, to_suv

HEADER_FACTORS = {
    "SIEMENS": 0.00042748316187197236,
    "GE_MEDICAL_AND_BQML": 0.0005367387681819742,
    "PHILIPS_BQML": 0.0007463747013889488,
    "PHILIPS_CNTS_AND_BQML_SUV": 0.000551,
    "PHILIPS_CNTS_AND_SUV": 0.000728,
    "BQML_AC_DT_lessThan_S_DT_SIEMENS": 0.0004069156854009332,
    "CPS_AND_BQML_AC_DT_-_S_DT": 0.00026503312764157046,
    "RADIOPHARM_DATETIME_UNDEFINED": 0.0003721089202818729,
}
DRO_CASES = [
    "DRO_0_0",
    "DRO_1_0",
    "DRO_2_0",
    "DRO_2_4",
    "DRO_3_0",
    "DRO_3_1",
    "DRO_3_3",
    "DRO_4_0",
    "DRO_5_0",
]
# Base synthetic header: 70 kg, 368.08 MBq F-18 injected at 10:00, scan at 11:00.
BASE_DOSE, HALF_LIFE, WEIGHT_G = 368.08e6, 6586.2, 70000.0


def expected_bw(seconds: float, dose: float = BASE_DOSE) -> float:
    return WEIGHT_G / (dose * 2 ** (-seconds / HALF_LIFE))


@pytest.mark.data
@pytest.mark.parametrize("case", sorted(HEADER_FACTORS))
def test_vendor_header_factors(suv_headers, case: str) -> None:
    conversion = compute_suv_factors(suv_headers(case))
    assert conversion.factor is not None
    assert abs(conversion.factor - HEADER_FACTORS[case]) <= 1e-6
    # Far tighter than the contract: the same arithmetic as the reference implementation.
    assert conversion.factor == pytest.approx(HEADER_FACTORS[case], rel=1e-9)


@pytest.mark.data
@pytest.mark.parametrize(
    ("case", "source"),
    [
        # FrameReferenceTime 0: the frame timing is implausible, QIBA's earliest acquisition.
        ("CPS_AND_BQML_AC_DT_-_S_DT", "earliest AcquisitionDate/Time"),
        # Siemens frame timing back-computes to the acquisition start (within 1e-10 s).
        ("BQML_AC_DT_lessThan_S_DT_SIEMENS", "back-computed from AcquisitionTime"),
    ],
)
def test_series_time_after_acquisition(suv_headers, case: str, source: str) -> None:
    conversion = compute_suv_factors(suv_headers(case))
    assert conversion.scan_time_source.startswith(source)
    assert any("is after the earliest AcquisitionTime" in w for w in conversion.warnings)


@pytest.mark.data
def test_philips_factor_ignored_for_bqml(suv_headers) -> None:
    headers = suv_headers("PHILIPS_BQML")
    assert 0x70531000 in headers[0]
    conversion = compute_suv_factors(headers)
    assert conversion.factor != pytest.approx(float(headers[0][0x70531000].value))
    assert "decayed" in conversion.method


@pytest.mark.data
@pytest.mark.parametrize("case", DRO_CASES)
def test_dro_suv_inside_mask(data_dir, case: str) -> None:
    folder = data_dir("suv-dro/DRO") / case
    volume = read_volume(folder / "PT")
    suv, _ = to_suv(volume)
    regions = load_regions(folder / "mask" / "DRO_mask.nii.gz", volume).regions
    assert len(regions) == 1
    values = suv[regions[0].mask]
    assert abs(values.min() - 0.20) <= 0.01
    assert abs(np.median(values) - 1.00) <= 0.01
    assert abs(values.max() - 4.00) <= 0.01


@pytest.mark.data
def test_dro_per_slice_rescale_slope_is_honoured(data_dir) -> None:
    volume = read_volume(data_dir("suv-dro/DRO/DRO_1_0/PT"))
    slopes = {float(h.RescaleSlope) for h in volume.headers}
    assert len(slopes) > 1  # the case exists to vary the slope between slices
    suv, conversion = to_suv(volume)
    reference, _ = to_suv(read_volume(data_dir("suv-dro/DRO/DRO_0_0/PT")))
    assert conversion.factor is not None
    np.testing.assert_allclose(suv, reference, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def sts001(data_dir):  # type: ignore[no-untyped-def]
    volume = read_volume(data_dir("sts001-raw/FDG_PET/image"))
    suv, conversion = to_suv(volume)
    return volume, suv, conversion


@pytest.mark.data
def test_sts001_raw_gtv_mass(data_dir, sts001) -> None:
    volume, suv, conversion = sts001
    assert conversion.factor == pytest.approx(2.429e-4, abs=0.0005e-4)
    assert conversion.decay_seconds == 45 * 60 + 11
    assert conversion.injected_dose_bq == pytest.approx(388.78e6, rel=1e-5)
    regions = load_regions(data_dir("sts001-raw/FDG_PET/mask"), volume)
    mass = next(r for r in regions.regions if r.name == "GTV_Mass")
    values = suv[mass.mask]
    assert 7.9 < values.max() < 8.0
    assert 0.15 < values.min() < 0.20


@pytest.mark.data
def test_sts001_matches_ibsi_converted_series(data_dir, sts001) -> None:
    raw, suv, _ = sts001
    converted = read_volume(
        data_dir("ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/PET/image")
    )
    assert converted.header.Units == "GML"
    # The IBSI series is a crop of the raw grid: same axes, integer voxel offset.
    mapping = np.linalg.solve(raw.affine, converted.affine)
    np.testing.assert_allclose(mapping[:3, :3], np.eye(3), atol=1e-4)
    offset = np.round(mapping[:3, 3]).astype(int)
    np.testing.assert_allclose(mapping[:3, 3], offset, atol=1e-3)
    crop = tuple(slice(o, o + n) for o, n in zip(offset, converted.shape, strict=True))
    assert np.max(np.abs(suv[crop] - converted.array)) < 0.001
    gml_suv, gml = to_suv(converted)
    assert gml.factor == 1.0
    np.testing.assert_array_equal(gml_suv, converted.array)


def test_base_header_factor(make_header) -> None:
    conversion = compute_suv_factors([make_header()])
    assert conversion.factor == pytest.approx(expected_bw(3600), rel=1e-12)
    assert conversion.scan_time_source == "SeriesDate/SeriesTime"
    assert conversion.decay_seconds == 3600


def test_admin_decay_correction_does_not_decay(make_header) -> None:
    conversion = compute_suv_factors([make_header(DecayCorrection="ADMIN")])
    assert conversion.factor == pytest.approx(WEIGHT_G / BASE_DOSE, rel=1e-12)


def test_dose_in_mbq(make_header) -> None:
    conversion = compute_suv_factors([make_header(RadionuclideTotalDose="368.08")])
    assert conversion.factor == pytest.approx(expected_bw(3600), rel=1e-12)
    assert any("MBq" in w for w in conversion.warnings)


def test_start_time_only_and_injection_before_midnight(make_header) -> None:
    header = make_header(
        RadiopharmaceuticalStartDateTime=None,
        RadiopharmaceuticalStartTime="233000",
        SeriesDate="20250102",
        AcquisitionDate="20250102",
        SeriesTime="003000",
        AcquisitionTime="003000",
    )
    conversion = compute_suv_factors([header])
    assert conversion.decay_seconds == 3600
    assert conversion.factor == pytest.approx(expected_bw(3600), rel=1e-12)
    assert any("previous day" in w for w in conversion.warnings)


def test_start_time_only_same_day(make_header) -> None:
    header = make_header(RadiopharmaceuticalStartDateTime=None)
    assert compute_suv_factors([header]).decay_seconds == 3600


def test_datetime_across_midnight(make_header) -> None:
    header = make_header(
        RadiopharmaceuticalStartDateTime="20241231233000.000000+0100",
        SeriesDate="20250101",
        SeriesTime="003000.5",
        AcquisitionTime="003000.5",
    )
    assert compute_suv_factors([header]).decay_seconds == 3600.5


def test_ge_private_post_injection_datetime_is_used(make_header) -> None:
    # A re-created series: SeriesTime after the acquisition, GE's datetime is the reference.
    header = make_header(SeriesTime="123000", AcquisitionTime="110500")
    header.private_block(0x0009, "GEMS_PETD_01", create=True)
    header.add_new(0x0009100D, "DT", "20250101110000.000000")
    conversion = compute_suv_factors([header])
    assert conversion.scan_time_source.startswith("GE private")
    assert conversion.factor == pytest.approx(expected_bw(3600), rel=1e-12)


def test_ge_private_datetime_yields_to_series_time_qiba_order(make_header) -> None:
    header = make_header(SeriesTime="110000", AcquisitionTime="110000")
    header.add_new(0x0009100D, "DT", "20250101105500.000000")
    conversion = compute_suv_factors([header])
    assert conversion.scan_time_source == "SeriesDate/SeriesTime"
    assert conversion.decay_seconds == 3600
    assert any("GE private scan datetime" in w for w in conversion.warnings)


def test_ge_private_datetime_read_as_unknown_vr(make_header) -> None:
    header = make_header(SeriesTime="123000", AcquisitionTime="110500")
    header.add_new(0x0009100D, "UN", b"20250101110000.000000 ")
    assert compute_suv_factors([header]).decay_seconds == 3600


def test_per_slice_acquisition_time_is_not_the_decay_reference(make_header) -> None:
    # Two beds: the second starts 3 min later, but START correction refers to the series.
    beds = [make_header(AcquisitionTime="110000"), make_header(AcquisitionTime="110300")]
    conversion = compute_suv_factors(beds)
    assert conversion.factor == pytest.approx(expected_bw(3600), rel=1e-12)


def test_decay_correction_none_uses_each_frame(make_header) -> None:
    corrected = ["NORM", "ATTN", "SCAT"]
    beds = [
        make_header(DecayCorrection="NONE", CorrectedImage=corrected, AcquisitionTime=t)
        for t in ("110000", "110500")
    ]
    conversion = compute_suv_factors(beds)
    lam = math.log(2) / HALF_LIFE
    duration = 300.0
    average = (1 - math.exp(-lam * duration)) / (lam * duration)
    for factor, start in zip(conversion.factors, (3600.0, 3900.0), strict=True):
        assert factor == pytest.approx(expected_bw(start) / average, rel=1e-12)
    assert conversion.factor is None


def test_decay_correction_none_needs_each_frame_duration(make_header) -> None:
    # Without T the factor λT/(1 - e^-λT) is unknown: 1.6 % for a 300 s F-18 frame.
    header = make_header(DecayCorrection="NONE", CorrectedImage=["ATTN"])
    del header.ActualFrameDuration
    with pytest.raises(SuvError, match="ActualFrameDuration"):
        compute_suv_factors([header])


def test_enhanced_multiframe_per_frame_times(make_header) -> None:
    header = make_header(DecayCorrection="NONE", CorrectedImage=["ATTN"])
    frames = []
    for time in ("20250101110000", "20250101110500"):
        content = Dataset()
        content.FrameAcquisitionDateTime = time
        content.FrameAcquisitionDuration = 120000  # ms, per frame (not ActualFrameDuration)
        group = Dataset()
        group.FrameContentSequence = [content]
        frames.append(group)
    header.PerFrameFunctionalGroupsSequence = frames
    conversion = compute_suv_factors([header, header], frame_numbers=[1, 2])
    lam = math.log(2) / HALF_LIFE
    average = -math.expm1(-lam * 120.0) / (lam * 120.0)
    np.testing.assert_allclose(
        conversion.factors, [expected_bw(3600) / average, expected_bw(3900) / average], rtol=1e-12
    )


def test_philips_cnts_activity_factor(make_header) -> None:
    header = make_header(Units="CNTS")
    header.add_new(0x70531009, "DS", "2.5")
    conversion = compute_suv_factors([header])
    assert conversion.factor == pytest.approx(2.5 * expected_bw(3600), rel=1e-12)


def test_gml_to_lean_body_mass(make_header) -> None:
    header = make_header(Units="GML")
    conversion = compute_suv_factors([header], SuvType.LBM_JAMES128)
    james = 1.10 * 70 - 128 * (70 / 175) ** 2
    assert conversion.factor == pytest.approx(james / 70, rel=1e-12)


def test_cm2ml_is_bsa(make_header) -> None:
    header = make_header(Units="CM2ML")
    assert compute_suv_factors([header], SuvType.BSA).factor == 1.0
    bsa_cm2 = 0.007184 * 70**0.425 * 175**0.725 * 1e4
    assert compute_suv_factors([header], SuvType.BW).factor == pytest.approx(70000 / bsa_cm2)


@pytest.mark.parametrize(
    ("suv_type", "sex", "normaliser_kg"),
    [
        (SuvType.LBM, "M", 1.10 * 70 - 120 * (70 / 175) ** 2),
        (SuvType.LBM, "F", 1.07 * 70 - 148 * (70 / 175) ** 2),
        (SuvType.LBM_JAMES128, "M", 1.10 * 70 - 128 * (70 / 175) ** 2),
        (SuvType.LBM_JAMES128, "F", 1.07 * 70 - 148 * (70 / 175) ** 2),
        (SuvType.LBM_JAMES128, "O", 1.085 * 70 - 138 * (70 / 175) ** 2),
        (SuvType.IBW, "O", 46.75 + 0.985 * (175 - 152)),
        (SuvType.LBM_JANMAHASATIAN, "M", 9270 * 70 / (6680 + 216 * 70 / 1.75**2)),
        (SuvType.LBM_JANMAHASATIAN, "F", 9270 * 70 / (8780 + 244 * 70 / 1.75**2)),
        (SuvType.IBW, "M", 48.0 + 1.06 * (175 - 152)),
        (SuvType.IBW, "F", 45.5 + 0.91 * (175 - 152)),
        (SuvType.BSA, "F", 0.007184 * 70**0.425 * 175**0.725 * 10),  # m² → cm² / 1000
    ],
)
def test_suv_types(make_header, suv_type: SuvType, sex: str, normaliser_kg: float) -> None:
    conversion = compute_suv_factors([make_header(PatientSex=sex)], suv_type)
    assert conversion.factor == pytest.approx(expected_bw(3600) * normaliser_kg / 70, rel=1e-12)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"PatientWeight": None}, "PatientWeight"),
        ({"PatientWeight": "0"}, "PatientWeight"),
        ({"PatientWeight": "700"}, "PatientWeight"),  # neither kg nor (over 1000) g
        ({"RadionuclideTotalDose": "0"}, "RadionuclideTotalDose"),
        ({"RadionuclideTotalDose": None}, "RadionuclideTotalDose"),
        ({"RadionuclideHalfLife": None}, "RadionuclideHalfLife"),
        ({"RadionuclideHalfLife": "0"}, "RadionuclideHalfLife"),
        (
            {"RadiopharmaceuticalStartDateTime": "20250101120000"},
            "RadiopharmaceuticalStartDateTime",
        ),
        (
            {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": None},
            "RadiopharmaceuticalStartTime",
        ),
        (
            {
                "RadiopharmaceuticalStartDateTime": "2025-01-01",
                "RadiopharmaceuticalStartTime": None,
            },
            "RadiopharmaceuticalStartDateTime",
        ),
        (
            {"RadiopharmaceuticalStartDateTime": "20250101190000", "RadionuclideHalfLife": "1223"},
            "(0018,1078)",
        ),
        ({"Units": "PROPCPS"}, "Units"),
        ({"Units": None}, "Units"),
        ({"Units": "CNTS"}, "(7053,1000)"),
        ({"CorrectedImage": ["DECY", "SCAT"]}, "CorrectedImage"),
        ({"CorrectedImage": ["ATTN"]}, "CorrectedImage"),
        ({"DecayCorrection": "LATER"}, "DecayCorrection"),
        ({"SeriesTime": None, "AcquisitionTime": None}, "SeriesTime"),
        ({"SeriesTime": "250000"}, "SeriesTime"),
    ],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_missing_or_absurd_tags_are_named(make_header, overrides: dict, names: str) -> None:
    with pytest.raises(SuvError, match=names.replace("(", r"\(").replace(")", r"\)")):
        compute_suv_factors([make_header(**overrides)])


@pytest.mark.parametrize("start", ["2025-01-01", "20240101100000", "19000101100000"])
@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_unusable_start_datetime_yields_to_its_time_of_day(make_header, start: str) -> None:
    # De-identification replaces dates and keeps times; for F-18 one hour is the only
    # plausible uptake, so the time of day (StartTime, or the DateTime's) is unambiguous.
    conversion = compute_suv_factors([make_header(RadiopharmaceuticalStartDateTime=start)])
    assert conversion.decay_seconds == 3600
    assert any("(0018,1078)" in w for w in conversion.warnings)


def test_missing_radiopharmaceutical_sequence(make_header) -> None:
    header = make_header()
    del header.RadiopharmaceuticalInformationSequence
    with pytest.raises(SuvError, match="RadiopharmaceuticalInformationSequence"):
        compute_suv_factors([header])


@pytest.mark.parametrize(
    ("suv_type", "overrides", "names"),
    [
        (SuvType.LBM, {"PatientSize": None}, "PatientSize"),
        (SuvType.LBM, {"PatientSex": "X"}, "PatientSex"),
        (SuvType.IBW, {"PatientSex": None}, "PatientSex"),
        (SuvType.BSA, {"PatientSize": "175"}, "PatientSize"),
    ],
)
def test_body_size_tags_are_named(make_header, suv_type, overrides, names) -> None:
    with pytest.raises(SuvError, match=names):
        compute_suv_factors([make_header(**overrides)], suv_type)


def test_mixed_series_refused(make_header) -> None:
    with pytest.raises(SuvError, match="PatientWeight differs"):
        compute_suv_factors([make_header(), make_header(PatientWeight="71")])


def test_non_pet_volume_refused(data_dir) -> None:
    ct = read_volume(data_dir("ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/CT/image"))
    with pytest.raises(SuvError, match="not PET"):
        to_suv(ct)


def test_siemens_private_datetime_of_another_creator_is_ignored(make_header) -> None:
    # (0071,1022) means Siemens' decay correction datetime only in the SIEMENS MED PT block.
    header = make_header(SeriesTime="123000", AcquisitionTime="110500")
    header.private_block(0x0071, "OTHER VENDOR", create=True)
    header.add_new(0x00711022, "DT", "20250101110000.000000")
    conversion = compute_suv_factors([header])
    assert not conversion.scan_time_source.startswith("Siemens")


def test_vendor_datetime_after_the_acquisition_began_is_not_used(make_header) -> None:
    header = make_header(SeriesTime="123000", AcquisitionTime="110000", FrameReferenceTime="0")
    header.private_block(0x0071, "SIEMENS MED PT", create=True)
    header.add_new(0x00711022, "DT", "20250101113000.000000")
    conversion = compute_suv_factors([header])
    assert conversion.scan_time_source == "earliest AcquisitionDate/Time"
    assert any("after the acquisition began" in w for w in conversion.warnings)


def test_ge_bed_starts_and_acquisition_times_that_both_disagree(make_header) -> None:
    beds = [
        make_header(
            Manufacturer="GE MEDICAL SYSTEMS",
            SeriesTime="120000",
            AcquisitionTime=time,
            FrameReferenceTime=offset,
        )
        for time, offset in (("110000", "0"), ("110600", "300000"))
    ]
    conversion = compute_suv_factors(beds)
    assert conversion.scan_time_source == "earliest AcquisitionDate/Time"
    assert conversion.decay_seconds == 3600


def test_ge_needs_no_frame_duration(make_header) -> None:
    header = make_header(Manufacturer="GE MEDICAL SYSTEMS", ActualFrameDuration=None)
    assert compute_suv_factors([header]).decay_seconds == 3600


def test_cnts_not_decay_corrected_without_activity_factor_uses_suv_factor(make_header) -> None:
    header = make_header(Units="CNTS", DecayCorrection="NONE", CorrectedImage=["ATTN"])
    header.add_new(0x70531000, "DS", "0.0005")
    conversion = compute_suv_factors([header])
    assert conversion.factor == 0.0005
