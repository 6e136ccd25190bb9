"""JSON rendering of the measurements the SR carries (same numbers, plain data)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from service.results.measurements import MeasurementReportData

SCHEMA_VERSION = 1
_UNITS = {
    "volume_ml": "mL",
    "mtv_ml": "mL",
    "tlg": "g (cm2 for SUVbsa)",
    "suv": "g/mL (SUVbw, SUVlbm, SUVibw) or cm2/mL (SUVbsa)",
}


def _clean(value: object) -> object:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def report_to_dict(report: MeasurementReportData) -> dict[str, object]:
    """Plain-data form of a report, with its schema version and units."""
    data = asdict(report)
    data = {"schema_version": SCHEMA_VERSION, "units": _UNITS, **data}
    return _clean(data)  # type: ignore[return-value]


def write_measurements_json(
    report: MeasurementReportData, path: Path, extra: dict[str, object] | None = None
) -> Path:
    """Write ``report`` (with ``extra`` top-level keys, e.g. ``qc``) as indented JSON."""
    data = report_to_dict(report) | (extra or {})
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
