"""The federated nnU-Net fingerprint equals nnU-Net's own fingerprint of the pooled data.

Two site folders are built by ``dataset build --format nnunet`` from synthetic PACS exports
(different scanners: spacing, grid size and intensities differ). Each site reduces its cases
to histograms and sums; the server pools them. nnU-Net's ``DatasetFingerprintExtractor`` runs
on a dataset holding both sites' cases; the two fingerprints must agree: mean and sd to 1e-6
relative, min and max exactly, percentiles within half an intensity bin, spacings within half
a spacing bin, shapes exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from federation.nnunet.fingerprint import (
    ChannelSummary,
    FingerprintBins,
    SiteFingerprint,
    pool,
    site_fingerprint_of,
)
from service.dicom.image_writer import SeriesSpec, write_series
from service.dicom.volume import read_volume
from tests.training.sitedata.clinic import patient, write_rtstruct_file
from training.nnunet.fingerprint import samples_per_case
from training.sitedata import BuildOptions, SiteFormat, build_site

#: Foreground samples over the pooled dataset (nnU-Net uses 10^8; small keeps the test quick).
SAMPLES = 40_000
BINS = FingerprintBins(intensity=0.25, spacing=1e-3, shape=1, relative=1e-4)
#: Per site: patient numbers, voxel spacing (mm), grid and the mean HU of its organs.
SCANNERS = {
    "site-a": ((1, 2), (2.0, 2.0, 3.0), (24, 20, 8), 55.0),
    "site-b": ((3, 4, 5), (1.5, 1.5, 2.5), (30, 26, 10), 70.0),
}


def _export(
    root: Path, number: int, spacing: tuple[float, ...], shape: tuple[int, ...], hu: float
) -> None:
    """A CT with noisy body and organs, and an RTSTRUCT contouring liver and spleen."""
    rng = np.random.default_rng(number)
    who = patient(number)
    spec = SeriesSpec(
        modality="CT",
        patient_id=who.patient_id,
        patient_name=who.name,
        patient_birth_date=who.birth_date,
        uid_seed=f"fingerprint-{number}",
        series_description="Planning CT",
    )
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-20.0, -15.0, 100.0)
    values = np.full(shape, -1000.0, dtype=np.float32)
    values[1:-1, 1:-1, :] = rng.normal(20.0, 25.0, (shape[0] - 2, shape[1] - 2, shape[2]))
    liver = np.zeros(shape, dtype=bool)
    liver[2:10, 2 : shape[1] // 2, 1:-1] = True
    spleen = np.zeros(shape, dtype=bool)
    spleen[12:20, 10 : shape[1] - 2, 2:-2] = True
    values[liver] = rng.normal(hu, 12.0, int(liver.sum()))
    values[spleen] = rng.normal(hu + 10, 30.0, int(spleen.sum()))
    write_series(root / "ct", values, affine, spec)
    volume = read_volume(root / "ct")
    write_rtstruct_file(root / "rs" / "RS.dcm", volume, {"Liver": liver, "Spleen": spleen})


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One nnU-Net site folder per scanner (built once: about 10 s)."""
    out = {}
    for index, (site, (numbers, spacing, shape, hu)) in enumerate(SCANNERS.items()):
        export = tmp_path_factory.mktemp(f"export-{site}")
        for number in numbers:
            _export(export / f"P{number}", number, spacing, shape, hu)
        folder = tmp_path_factory.mktemp(f"built-{site}") / f"Dataset{611 + index}_{site}"
        build_site(
            BuildOptions(
                dicom=(export,), task="ct-organs", out=folder, site=site, format=SiteFormat.NNUNET
            )
        )
        out[site] = folder
    return out


def _nnunet_fingerprint(
    sites: dict[str, Path], tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    """nnU-Net's own fingerprint of a dataset holding every site's cases."""
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor

    raw = tmp / "nnUNet_raw"
    pooled = raw / "Dataset619_Pooled"
    for part in ("imagesTr", "labelsTr"):
        (pooled / part).mkdir(parents=True)
        for folder in sites.values():
            for path in (folder / part).iterdir():
                shutil.copy(path, pooled / part / path.name)
    dataset = json.loads((next(iter(sites.values())) / "dataset.json").read_text())
    dataset["numTraining"] = len(list((pooled / "labelsTr").iterdir()))
    (pooled / "dataset.json").write_text(json.dumps(dataset))
    monkeypatch.setattr(fingerprint_extractor, "nnUNet_raw", str(raw))
    monkeypatch.setattr(fingerprint_extractor, "nnUNet_preprocessed", str(tmp / "preprocessed"))
    extractor = fingerprint_extractor.DatasetFingerprintExtractor(pooled.name, num_processes=1)
    extractor.num_foreground_voxels_for_intensitystats = SAMPLES
    extractor.show_progress_bar = False
    return extractor.run(overwrite_existing=True)  # type: ignore[no-any-return]


def test_pooled_fingerprint_equals_nnunets_fingerprint_of_the_pooled_data(
    sites: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = sum(len(list((f / "labelsTr").iterdir())) for f in sites.values())
    assert cases == 5
    per_case = samples_per_case(cases, SAMPLES)
    # What travels: each site's summary as JSON.
    sent = [json.dumps(site_fingerprint_of(f, per_case, BINS).as_json()) for f in sites.values()]
    pooled = pool([SiteFingerprint.from_json(json.loads(text)) for text in sent])
    ours = pooled.nnunet_fingerprint()
    theirs = _nnunet_fingerprint(sites, tmp_path, monkeypatch)

    ours_ch = ours["foreground_intensity_properties_per_channel"]["0"]  # type: ignore[index]
    theirs_ch = theirs["foreground_intensity_properties_per_channel"][0]  # type: ignore[index]
    assert ours_ch["mean"] == pytest.approx(theirs_ch["mean"], rel=1e-6)
    assert ours_ch["std"] == pytest.approx(theirs_ch["std"], rel=1e-6)
    assert ours_ch["min"] == theirs_ch["min"] and ours_ch["max"] == theirs_ch["max"]
    for name in ("percentile_00_5", "median", "percentile_99_5"):
        assert abs(ours_ch[name] - theirs_ch[name]) <= BINS.intensity / 2 + 1e-9, name
    assert theirs_ch["percentile_99_5"] - theirs_ch["percentile_00_5"] > 50  # not a flat image
    their_spacings = sorted(tuple(float(v) for v in s) for s in theirs["spacings"])  # type: ignore[attr-defined]
    np.testing.assert_allclose(ours["spacings"], their_spacings, atol=BINS.spacing / 2)
    their_shapes = sorted(tuple(int(v) for v in s) for s in theirs["shapes_after_crop"])  # type: ignore[attr-defined]
    assert [tuple(s) for s in ours["shapes_after_crop"]] == their_shapes  # type: ignore[attr-defined]
    assert len(set(their_spacings)) == 2  # the two scanners
    assert ours["median_relative_size_after_cropping"] == pytest.approx(
        theirs["median_relative_size_after_cropping"], abs=BINS.relative / 2
    )


def test_histogram_percentiles_are_within_half_a_bin() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(40, 30, 5000), rng.gamma(2.0, 50.0, 3000)])
    parts = [ChannelSummary.of(values[:1000], 0.5), ChannelSummary.of(values[1000:], 0.5)]
    merged = parts[0].merge(parts[1])
    assert merged.count == values.size
    assert merged.mean == pytest.approx(values.mean(), rel=1e-12)
    assert merged.std == pytest.approx(values.std(), rel=1e-12)
    for q in (0.0, 0.5, 10.0, 50.0, 73.3, 99.5, 100.0):
        assert abs(merged.percentile(q) - np.percentile(values, q)) <= 0.25 + 1e-9, q
    with pytest.raises(ValueError, match="bin widths differ"):
        parts[0].merge(ChannelSummary.of(values, 1.0))
