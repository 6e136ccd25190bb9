"""Sites train on folders built by ``fedseg dataset build`` from DICOM + RTSTRUCT.

The phantoms are written as a planning system exports them (CT series and an RTSTRUCT per case,
each site spelling ROI names its own way); each site builds its own folder; a live two-site
federation (TLS SuperLink, two SuperNodes on loopback) then trains from those folders.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from federation.errors import FederationError
from federation.local import LocalTraining, model_config, train_heads
from federation.sites import SiteSpec, load_site_cases
from tests.federation.deployment import Pilot
from training.models import build_model
from training.phantoms import PhantomConfig, generate_dataset
from training.phantoms.config import PhantomModality, Size
from training.phantoms.rtstruct import write_phantom_rtstructs
from training.sitedata import BuildOptions, SiteIndex, build_site

# Site 2 labels the spleen only (ROI "SPLEEN"); site 3 every organ ("L Kidney", "R Lung", ...).
PHANTOMS = PhantomConfig(
    sites=3,
    cases_per_site=2,
    seed=5,
    size=Size.TINY,
    modalities=(PhantomModality.CT,),
    full_label_sites=1,
)
SITES = {"a": ("spleen", 2), "b": ("liver,spleen", 3)}


@pytest.fixture(scope="module")
def site_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("site-data")
    generate_dataset(root / "pacs", PHANTOMS)
    write_phantom_rtstructs(root / "pacs")
    folders = {}
    for name, (_, number) in SITES.items():
        out = root / f"site-{name}"
        options = BuildOptions(
            dicom=(root / "pacs" / f"site-{number:02d}",), task="ct-organs", out=out, site=name
        )
        assert len(build_site(options).records) == 2
        folders[name] = out
    return folders


def test_sites_spell_their_rois_differently(site_folders: dict[str, Path]) -> None:
    pacs = site_folders["a"].parent / "pacs"
    names = {}
    for number in (2, 3):
        rs = pydicom.dcmread(pacs / f"site-{number:02d}/case-001/rtstruct/RS.dcm")
        names[number] = [str(r.ROIName) for r in rs.StructureSetROISequence]
    assert "SPLEEN" in names[2] and "Liver" not in names[2]
    assert {"Spleen", "L Kidney", "R Lung"} <= set(names[3])


def test_cases_carry_their_contoured_organs(site_folders: dict[str, Path]) -> None:
    spec = SiteSpec(name="b", tasks=("liver", "spleen"), data=str(site_folders["b"]), cases=2)
    cases = load_site_cases(spec)
    index = SiteIndex.load(site_folders["b"])
    assert [c.annotated for c in cases] == [frozenset(r.contoured) for r in index.cases]
    assert all("liver" in (c.annotated or ()) for c in cases)
    for case in cases:
        assert case.organs.shape == case.image.shape and case.target("liver").any()


def test_a_site_whose_folder_contours_none_of_its_tasks_is_refused(
    site_folders: dict[str, Path],
) -> None:
    spec = SiteSpec(name="a", tasks=("pancreas",), data=str(site_folders["a"]), cases=2)
    with pytest.raises(FederationError, match=r"no case in .* contours any of its tasks pancreas"):
        load_site_cases(spec)


def test_an_organ_a_case_did_not_contour_gets_no_loss(site_folders: dict[str, Path]) -> None:
    spec = SiteSpec(name="a", tasks=("spleen",), data=str(site_folders["a"]), cases=2)
    cases = [dataclasses.replace(c, annotated=frozenset({"spleen"})) for c in load_site_cases(spec)]
    heads = ["liver", "spleen"]

    def liver_change(unknown_as_background: bool) -> float:
        model = build_model(model_config(heads, (4, 8)), seed=0)
        before = [p.detach().clone() for p in model.heads["liver"].parameters()]
        train_heads(model, cases, heads, LocalTraining(steps=2), unknown_as_background)
        after = list(model.heads["liver"].parameters())
        return max(float((a - b).abs().max()) for a, b in zip(after, before, strict=True))

    assert liver_change(unknown_as_background=False) == 0.0  # unknown: untouched
    assert liver_change(unknown_as_background=True) > 0.0  # naive pooling: taught background


@pytest.mark.timeout(400)
def test_two_site_federation_runs_from_built_site_folders(
    site_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("federation")
    pilot = Pilot(tmp, SITES)
    try:
        pilot.start_superlink()
        pilot.start_sites({n: {"data": str(f), "cases": 2} for n, f in site_folders.items()})
        state = tmp / "state"
        run = pilot.run(
            f'state-dir="{state}" num-rounds=2 min-sites=2 local-steps=1 filters="4,8" '
            "round-timeout=90 connect-timeout=60"
        )
        assert run.wait_for("finished at round 2", 300), run.text
    finally:
        pilot.close()
    entries = [json.loads(line) for line in (state / "registry.jsonl").read_text().splitlines()]
    assert [e["server_round"] for e in entries] == [1, 2]
    assert entries[-1]["sites"] == ["a", "b"]
    assert set(entries[-1]["task_metrics"]) == {"liver", "spleen"}
    assert all(np.isfinite(v) for v in entries[-1]["task_metrics"].values())
