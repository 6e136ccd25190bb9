from __future__ import annotations

import dataclasses

import numpy as np

from service.labels import get_table
from training.sitedata.findings import Severity, Topic
from training.sitedata.qc import check_volumes, label_volumes, volume_priors


@dataclasses.dataclass(frozen=True)
class _Prior:
    low: float
    high: float


def test_volumes_outside_their_prior_are_reported() -> None:
    findings = check_volumes({"liver": 12.0, "spleen": 150.0}, {"liver": (800.0, 3500.0)}, "c1")
    (finding,) = findings
    assert finding.severity is Severity.WARNING and finding.topic is Topic.QC
    assert finding.case == "c1" and finding.message.startswith("liver is 12.0 mL, outside")


def test_priors_are_read_from_the_label_table_entries() -> None:
    table = get_table("ct-organs")
    assert volume_priors(table) == {}  # no table carries priors yet (#14 adds them)
    liver = table.by_name("liver")
    with_prior = dataclasses.replace(table, labels=(liver,))
    object.__setattr__(liver, "volume_ml", _Prior(800.0, 3500.0))
    try:
        assert volume_priors(with_prior) == {"liver": (800.0, 3500.0)}
    finally:
        object.__delattr__(liver, "volume_ml")


def test_label_volumes_in_ml() -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[:5] = 1
    labels[5:7] = 7
    assert label_volumes(labels, get_table("ct-organs"), voxel_ml=0.008) == {
        "liver": 4.0,
        "lung_left": 1.6,
    }
