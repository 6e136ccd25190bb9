"""Quality checks on every built case: structures inside the image, plausible volumes.

Volume priors come from the label tables once the QC work (#14) adds them: :func:`volume_priors`
is the one place that reads them. Until a label has a prior, its volume is recorded in the site
index and not judged.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydicom.dataset import Dataset

from service.dicom.volume import Volume
from service.labels.registry import LabelTable
from service.masks.references import roi_points
from training.sitedata.findings import Finding, Severity, Topic

#: How far (voxels) a contour point may lie beyond the outer voxel centres and still be inside.
EDGE_TOLERANCE = 0.5 + 1e-3


def volume_priors(table: LabelTable) -> dict[str, tuple[float, float]]:
    """Plausible volume range (mL) of each label that has one in its label table.

    The hook for #14's priors: each entry's ``volume_ml`` attribute, as ``(low, high)`` or an
    object with ``low`` and ``high``, when the table carries it.
    """
    priors = {}
    for entry in table.labels:
        prior = getattr(entry, "volume_ml", None)
        if prior is None:
            continue
        low, high = (prior.low, prior.high) if hasattr(prior, "low") else prior
        priors[entry.name] = (float(low), float(high))
    return priors


def label_volumes(labels: np.ndarray, table: LabelTable, voxel_ml: float) -> dict[str, float]:
    """Volume (mL) of every label present in ``labels``."""
    counts = np.bincount(labels.ravel(), minlength=max(e.number for e in table.labels) + 1)
    return {
        e.name: round(float(counts[e.number]) * voxel_ml, 3)
        for e in table.labels
        if counts[e.number]
    }


def check_volumes(
    volumes: Mapping[str, float], priors: Mapping[str, tuple[float, float]], case: str
) -> list[Finding]:
    """A warning for every contoured label whose volume lies outside its prior."""
    findings = []
    for name, volume in volumes.items():
        if name not in priors:
            continue
        low, high = priors[name]
        if not low <= volume <= high:
            text = (
                f"{name} is {volume:.1f} mL, outside the plausible {low:g}-{high:g} mL: check "
                "the structure (wrong organ, partial contour, or cut off by the field of view)"
            )
            findings.append(Finding(Severity.WARNING, Topic.QC, text, case))
    return findings


def contours_outside(
    ds: Dataset, volume: Volume, names: Mapping[int, str], case: str, source: str
) -> list[Finding]:
    """A warning for every ROI with contour points outside the image's field of view in-plane.

    Out-of-slice contours are refused by the reader; in-plane, rasterising keeps only the part
    inside the image, which is fine for training on that image but worth knowing.
    """
    findings = []
    inverse = np.linalg.inv(volume.affine)
    limits = np.asarray(volume.shape[:2], dtype=np.float64) - 1
    for number, points in roi_points(ds).items():
        if not len(points):
            continue
        voxels = (inverse @ np.c_[points, np.ones(len(points))].T)[:2].T
        outside = np.any((voxels < -EDGE_TOLERANCE) | (voxels > limits + EDGE_TOLERANCE), axis=1)
        if outside.any():
            text = (
                f"ROI {names.get(number, str(number))!r}: {int(outside.sum())} of {len(points)} "
                "contour points lie outside the image; only the part inside is kept"
            )
            findings.append(Finding(Severity.WARNING, Topic.QC, text, case, source))
    return findings


def mask_findings(warnings: list[str], case: str, source: str) -> list[Finding]:
    """The mask reader's warnings (pixels dropped outside the image, grids that differ)."""
    return [Finding(Severity.WARNING, Topic.QC, w, case, source) for w in warnings]
