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
from pathlib import Path

import numpy as np
import pytest

from federation.nnunet.fingerprint import (
    ChannelSummary,
    SiteFingerprint,
    pool,
    site_fingerprint_of,
)
from tests.federation.nnunet.sites import BINS, SAMPLES, nnunet_fingerprint
from training.nnunet.fingerprint import samples_per_case


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
    theirs = nnunet_fingerprint(sites, tmp_path, monkeypatch)

    ours_ch = ours["foreground_intensity_properties_per_channel"]["0"]  # type: ignore[index]
    theirs_ch = theirs["foreground_intensity_properties_per_channel"][0]  # type: ignore[index]
    assert ours_ch["mean"] == pytest.approx(theirs_ch["mean"], rel=1e-6)
    assert ours_ch["std"] == pytest.approx(theirs_ch["std"], rel=1e-6)
    assert ours_ch["min"] == theirs_ch["min"] and ours_ch["max"] == theirs_ch["max"]
    for name in ("percentile_00_5", "median", "percentile_99_5"):
        assert abs(ours_ch[name] - theirs_ch[name]) <= BINS.intensity / 2 + 1e-9, name
    assert theirs_ch["percentile_99_5"] - theirs_ch["percentile_00_5"] > 50  # not a flat image
    # each case's spacing with its own shape (the planner resamples every shape by its spacing)
    their_pairs = sorted(
        (tuple(float(v) for v in s), tuple(int(v) for v in h))
        for s, h in zip(theirs["spacings"], theirs["shapes_after_crop"], strict=True)  # type: ignore[call-overload]
    )
    our_pairs = sorted(
        (tuple(s), tuple(h))
        for s, h in zip(ours["spacings"], ours["shapes_after_crop"], strict=True)  # type: ignore[call-overload]
    )
    assert [p[1] for p in our_pairs] == [p[1] for p in their_pairs]
    np.testing.assert_allclose(
        [p[0] for p in our_pairs], [p[0] for p in their_pairs], atol=BINS.spacing / 2
    )
    their_spacings = sorted(tuple(float(v) for v in s) for s in theirs["spacings"])  # type: ignore[attr-defined]
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
