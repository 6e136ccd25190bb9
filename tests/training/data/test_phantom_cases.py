"""Training reads a phantom dataset with each site's partial labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.cli.train_cmd import annotated_classes
from training.data.cases import discover_cases, load_case
from training.phantoms import PhantomConfig, generate_dataset
from training.tasks import get_task


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    config = PhantomConfig(sites=3, cases_per_site=1, seed=11, size="tiny", modalities=("ct", "pt"))
    generate_dataset(root, config)
    return root


def test_sites_carry_their_annotated_organs(dataset: Path) -> None:
    task = get_task("ct-organs")
    sources = discover_cases(dataset, task=task)
    by_site = {s.site: s.annotated for s in sources}
    assert by_site == {
        "site-01": (task.index_of("liver"),),
        "site-02": (task.index_of("spleen"),),
        "site-03": (task.index_of("kidney_left"), task.index_of("kidney_right")),
    }
    case = load_case(sources[0], modality="CT")
    assert case.labels is not None and case.labels.shape == case.image.shape
    # Site 1 labels only the liver, although the image holds every organ.
    assert set(np.unique(case.labels)) == {0, task.index_of("liver")}


def test_a_site_folder_reads_only_that_site(dataset: Path) -> None:
    sources = discover_cases(dataset / "site-02", task=get_task("ct-organs"))
    assert [s.site for s in sources] == ["site-02"]


def test_other_tasks_use_their_own_series_and_labels(dataset: Path) -> None:
    sources = discover_cases(dataset, task=get_task("pet-lesion"))
    assert len(sources) == 3
    assert all(s.annotated is None and s.image.name == "pt" for s in sources)
    assert all(s.labels is not None and s.labels.name == "pet-lesion.nii.gz" for s in sources)
    case = load_case(sources[0], modality="PT")
    assert case.labels is not None and case.labels.max() == 1


def test_annotated_class_vector() -> None:
    np.testing.assert_array_equal(annotated_classes(4, (2,)), [False, False, True, False])
    np.testing.assert_array_equal(annotated_classes(3, None), [False, True, True])
