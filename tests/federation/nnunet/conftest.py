"""Fixtures of the federated nnU-Net tests (the site folders are built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.federation.nnunet.sites import SCANNERS, export_case, federated_plans, tiny
from training.nnunet.federated_plans import SharedPlans
from training.sitedata import BuildOptions, SiteFormat, build_site


@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One nnU-Net site folder per scanner (built once per session: about 10 s)."""
    out = {}
    for index, (site, (numbers, spacing, shape, hu)) in enumerate(SCANNERS.items()):
        export = tmp_path_factory.mktemp(f"export-{site}")
        for number in numbers:
            export_case(export / f"P{number}", number, spacing, shape, hu)
        folder = tmp_path_factory.mktemp(f"built-{site}") / f"Dataset{611 + index}_{site}"
        build_site(
            BuildOptions(
                dicom=(export,), task="ct-organs", out=folder, site=site, format=SiteFormat.NNUNET
            )
        )
        out[site] = folder
    return out


@pytest.fixture(scope="session")
def tiny_plans(sites: dict[str, Path]) -> SharedPlans:
    """The federation's plans of :func:`sites`, with a tiny network (planned once per session)."""
    return tiny(federated_plans(sites))
