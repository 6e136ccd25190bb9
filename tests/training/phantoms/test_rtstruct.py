from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.labels import get_table
from service.nifti import read_nifti
from training.phantoms import PhantomConfig, generate_dataset
from training.phantoms.config import PhantomModality, Size
from training.phantoms.dataset import DatasetIndex
from training.phantoms.rtstruct import roi_name, write_phantom_rtstructs
from training.sitedata import BuildOptions, SiteIndex, build_site

CONFIG = PhantomConfig(
    sites=4,
    cases_per_site=1,
    seed=3,
    size=Size.TINY,
    modalities=(PhantomModality.CT,),
    partial_labels=False,
    absent_organ_rate=0.0,
)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    generate_dataset(out, CONFIG)
    write_phantom_rtstructs(out)
    return out


def test_each_site_spells_its_rois_differently() -> None:
    table = get_table("ct-organs")
    left = table.by_name("lung_left")
    assert [roi_name(left, site) for site in (1, 2, 3, 4)] == [
        "Lung_L",
        "LUNG LT",
        "L Lung",
        "Lung-Left",
    ]
    assert roi_name(table.by_name("spinal_cord"), 2) == "SPINAL CORD"


@pytest.mark.parametrize("site", [1, 2, 3, 4])
def test_phantom_rtstructs_build_back_into_the_phantom_labels(
    phantoms: Path, tmp_path: Path, site: int
) -> None:
    index = DatasetIndex.load(phantoms)
    (case,) = index.sites[site - 1].cases
    rtstruct = pydicom.dcmread(phantoms / case.path / "rtstruct/RS.dcm")
    names = [str(r.ROIName) for r in rtstruct.StructureSetROISequence]
    assert names[-1] == "BODY"
    options = BuildOptions(
        dicom=(phantoms / f"site-{site:02d}",), task="ct-organs", out=tmp_path / "s", site="s"
    )
    result = build_site(options)
    (built,) = SiteIndex.load(tmp_path / "s").cases
    expected, _ = read_nifti(phantoms / case.labels["ct-organs"])
    labels, _ = read_nifti(tmp_path / "s" / built.label)
    assert np.array_equal(labels, expected)  # every spelling mapped, every voxel back
    present = {get_table("ct-organs").by_number(int(v)).name for v in np.unique(expected) if v}
    assert set(built.contoured) == present
    unmapped = [f.message for f in result.findings if "not mapped" in f.message]
    assert unmapped == [
        "ROI 'BODY' is not mapped (TG-263 External is not a label of ct-organs); "
        "set a label or 'ignore' in the mapping file"
    ]
