from __future__ import annotations

import numpy as np

from service.labels import get_table
from training.sitedata.findings import Severity, Topic
from training.sitedata.qc import check_volumes, label_volumes, volume_priors


def test_volumes_outside_their_prior_are_reported() -> None:
    findings = check_volumes({"liver": 12.0, "spleen": 150.0}, {"liver": (800.0, 3500.0)}, "c1")
    (finding,) = findings
    assert finding.severity is Severity.WARNING and finding.topic is Topic.QC
    assert finding.case == "c1" and finding.message.startswith("liver is 12.0 mL, outside")


def test_priors_are_read_from_the_label_table_entries() -> None:
    # The possible limits of the QC priors (service.qc.priors), merged over the age bands.
    priors = volume_priors(get_table("ct-organs"))
    assert priors["liver"] == (30.0, 6200.0) and priors["spleen"] == (2.0, 3000.0)
    assert "spinal_cord" not in priors  # every torso scan cuts it: no volume prior
    assert volume_priors(get_table("pet-lesion")) == {}


def test_label_volumes_in_ml() -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[:5] = 1
    labels[5:7] = 7
    assert label_volumes(labels, get_table("ct-organs"), voxel_ml=0.008) == {
        "liver": 4.0,
        "lung_left": 1.6,
    }
