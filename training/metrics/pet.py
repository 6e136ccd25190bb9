"""Relative errors (%) of PET measures of a predicted mask against a reference mask.

The measures come from the service's PET quantification (:mod:`service.pet.measures`), so
evaluation and clinical reports compute SUVpeak, MTV and TLG the same way. An empty prediction
has no SUV values; its measures count as 0, i.e. an error of -100 %, never NaN.
"""

from __future__ import annotations

import numpy as np

from service.pet.measures import measure_region
from service.regions import Region

MEASURES = ("suv_max", "suv_mean", "suv_median", "suv_peak", "mtv_ml", "tlg")


def pet_measures(suv: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """SUVmax, SUVmean, SUVmedian, SUVpeak, MTV (mL) and TLG of one mask (0 when empty)."""
    region = measure_region(Region("region", 1, np.asarray(mask, dtype=bool)), suv, affine)
    values = {
        "suv_max": region.suv_max,
        "suv_mean": region.suv_mean,
        "suv_median": region.suv_median,
        "suv_peak": region.suv_peak_global,
        "mtv_ml": region.mtv_ml,
        "tlg": region.tlg,
    }
    return {name: float(value) if value is not None else 0.0 for name, value in values.items()}


def pet_relative_errors(
    suv: np.ndarray, affine: np.ndarray, pred: np.ndarray, truth: np.ndarray
) -> dict[str, float]:
    """``100 * (predicted - reference) / reference`` of each measure.

    Raises
    ------
    ValueError
        If the reference mask is empty (relative errors need a reference value).
    """
    if not np.asarray(truth, dtype=bool).any():
        raise ValueError("reference mask is empty: relative PET errors are undefined")
    predicted = pet_measures(suv, affine, pred)
    reference = pet_measures(suv, affine, truth)
    return {
        name: 100.0 * (predicted[name] - reference[name]) / reference[name]
        if reference[name]
        else 0.0
        for name in MEASURES
    }
