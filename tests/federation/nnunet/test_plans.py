"""nnU-Net's planner on the pooled fingerprint gives every site one plans.json, nnU-Net's own.

The server plans from the sites' fingerprints and dataset descriptions only (it holds no image);
nnU-Net's extractor and planner run on a dataset holding both sites' cases. The plans must be
the same except where the pooled fingerprint is stated to differ: the intensity percentiles
(within half an intensity bin) and the spacings (within half a spacing bin), with everything
the planner derives from them (target spacing, and the resampled median shape) following.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from federation.nnunet.plans import SharedPlans, SiteDataset, federation_dataset_json
from tests.federation.nnunet.sites import BINS, POOLED, federated_plans, nnunet_plans


def _without(plans: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    copy = json.loads(json.dumps(plans))
    for path in paths:
        node = copy
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1])
    return copy


def test_every_site_gets_nnunets_plans_of_the_pooled_data(
    sites: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = federated_plans(sites)
    # every site receives the same message, and it parses to the same plans
    messages = {site: shared.as_json() for site in sites}
    assert len(set(messages.values())) == 1
    received = [SharedPlans.from_json(m) for m in messages.values()]
    assert all(r == shared for r in received)
    assert shared.dataset["labels"] == {"background": 0, "liver": 1, "spleen": 2}
    assert shared.dataset["numTraining"] == 5

    theirs = nnunet_plans(sites, tmp_path, monkeypatch)
    ours = shared.plans
    assert set(ours["configurations"]) == set(theirs["configurations"])  # type: ignore[arg-type]
    # stated differences: spacing-derived values within half a spacing bin ...
    for name, config in ours["configurations"].items():
        their = theirs["configurations"][name]  # type: ignore[index]
        np.testing.assert_allclose(config["spacing"], their["spacing"], atol=BINS.spacing / 2)
    np.testing.assert_allclose(
        ours["original_median_spacing_after_transp"],
        theirs["original_median_spacing_after_transp"],  # type: ignore[arg-type]
        atol=BINS.spacing / 2,
    )
    # ... and percentiles within half an intensity bin (mean, sd, min, max to 1e-6)
    ours_ch = ours["foreground_intensity_properties_per_channel"]["0"]
    theirs_ch = theirs["foreground_intensity_properties_per_channel"]["0"]  # type: ignore[index]
    for key, value in theirs_ch.items():
        bound = BINS.intensity / 2 if key in ("percentile_00_5", "median", "percentile_99_5") else 0
        assert ours_ch[key] == pytest.approx(value, rel=1e-6, abs=bound + 1e-9), key
    # everything else is identical: network, patch, batch size, normalisation, resampling, ...
    differing = [
        ("original_median_spacing_after_transp",),
        ("foreground_intensity_properties_per_channel",),
    ] + [("configurations", c, "spacing") for c in ours["configurations"]]
    assert _without(ours, differing) == _without(theirs, differing)  # type: ignore[arg-type]
    assert "3d_fullres" in ours["configurations"]


def test_sites_of_different_tasks_are_refused(sites: dict[str, Path]) -> None:
    described = [SiteDataset.of_folder(folder) for folder in sites.values()]
    other = SiteDataset(**{**described[1].as_json(), "task": "pet-lesion", "labels": ("lesion",)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in task"):
        federation_dataset_json([described[0], other], POOLED)


def test_a_site_lacking_a_label_adds_nnunets_ignore_label(sites: dict[str, Path]) -> None:
    described = [SiteDataset.of_folder(folder) for folder in sites.values()]
    liver_only = SiteDataset(**{**described[1].as_json(), "labels": ("liver",)})  # type: ignore[arg-type]
    dataset = federation_dataset_json([described[0], liver_only], POOLED)
    assert dataset["labels"] == {"background": 0, "liver": 1, "spleen": 2, "ignore": 3}
