"""Edited copies of a shared RTSTRUCT whose extra ROI has one stray contour."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom

#: The IBSI STS_001 PET (5095 tumour voxels, 3.27 mm slices) and its one-ROI RTSTRUCT.
IBSI_PET = "ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/PET"
STRAY = "GTV_2"


def with_stray_roi(source: Path, out: Path, shift_mm: float, roi: str = STRAY) -> Path:
    """``source`` plus a new ROI ``roi``: a copy of the first ROI whose third contour moves
    ``shift_mm`` in z. Half a slice puts the contour between slices; a metre puts it outside
    the series. The new ROI takes the next free number (2 on a one-ROI file).
    """
    ds = pydicom.dcmread(source)
    number = 1 + max(int(r.ROINumber) for r in ds.StructureSetROISequence)
    declared = copy.deepcopy(ds.StructureSetROISequence[0])
    declared.ROINumber, declared.ROIName = number, roi
    ds.StructureSetROISequence.append(declared)
    contours = copy.deepcopy(ds.ROIContourSequence[0])
    contours.ReferencedROINumber = number
    moved = contours.ContourSequence[2]
    points = np.asarray(moved.ContourData, dtype=np.float64).reshape(-1, 3)
    points[:, 2] += shift_mm
    moved.ContourData = [f"{v:.4f}" for v in points.ravel()]
    ds.ROIContourSequence.append(contours)
    observation = copy.deepcopy(ds.RTROIObservationsSequence[0])
    observation.ObservationNumber = observation.ReferencedROINumber = number
    ds.RTROIObservationsSequence.append(observation)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out)
    return out
