"""The ClientApp's nnU-Net side: node config checks, validation split, fork-free fingerprint."""

from __future__ import annotations

import json
import multiprocessing.pool
from pathlib import Path

import pytest

from federation.errors import FederationError
from federation.nnunet.fingerprint import FingerprintBins, site_fingerprint_of
from federation.nnunet.site import NnunetSite, validation_split
from federation.sites import SiteSpec
from training.nnunet.fingerprint import training_files


def test_validation_split_holds_out_a_fixed_share_whatever_the_listing_order() -> None:
    cases = [f"site-a_p{n:04d}_01" for n in range(1, 11)]
    training, validation = validation_split(cases, 0.2)
    assert len(validation) == 2 and sorted(training + validation) == cases
    assert validation_split(list(reversed(cases)), 0.2) == (training, validation)
    assert validation_split(cases[:2], 0.2)[1] != []  # at least one of two
    assert validation_split(cases[:2], 0.9)[0] != []  # never every case
    assert validation_split(cases[:1], 0.5) == (cases[:1], [])
    assert validation_split(cases, 0.0) == (cases, [])


def test_node_config_of_an_nnunet_site(sites: dict[str, Path], tmp_path: Path) -> None:
    folder = str(sites["site-a"])
    site = NnunetSite.of(SiteSpec(name="a", data=folder, work_dir=str(tmp_path)))
    assert site.labels == ("liver", "spleen") and site.dataset.cases == 2
    assert NnunetSite.of(
        SiteSpec(name="a", tasks=("spleen", "liver"), data=folder, work_dir=str(tmp_path))
    ).labels == ("liver", "spleen")
    with pytest.raises(FederationError, match="differ from the labels"):
        NnunetSite.of(SiteSpec(name="a", tasks=("liver",), data=folder, work_dir=str(tmp_path)))
    with pytest.raises(FederationError, match="work-dir"):
        NnunetSite.of(SiteSpec(name="a", data=folder))
    with pytest.raises(FederationError, match="work-dir"):
        NnunetSite.of(SiteSpec(name="a", tasks=("liver",), work_dir=str(tmp_path)))
    with pytest.raises(FederationError, match="fedseg dataset build"):
        NnunetSite.of(SiteSpec(name="a", data=str(tmp_path), work_dir=str(tmp_path)))


def test_the_site_fingerprint_forks_no_process(
    sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process forked inside a Flower ClientApp inherits its exit handlers: closing it reports
    # the task stopped and the site's reply is refused (nnU-Net's file listing forks 12).
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    folder = sites["site-b"]
    dataset = json.loads((folder / "dataset.json").read_text())
    listed = get_filenames_of_train_images_and_targets(str(folder), dataset)
    assert training_files(folder, dataset["file_ending"]) == listed

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(multiprocessing.pool.Pool, "__init__", refuse)
    summary = site_fingerprint_of(folder, 100, FingerprintBins())
    assert summary.cases == 3
