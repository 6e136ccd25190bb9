"""The per-structure table ``fedseg segment`` prints, from a series' measurements.json.

One row per segment: volume in mL, the mean in the image's unit (HU, SUV), and for PET the
SUVmax, MTV, TLG and lesion count; a QC column appears once any segment carries QC data.
"""

from __future__ import annotations

from typing import Any

#: QC data of a segment may be flags (a list), a mapping with "flags", or a status word.
_OK = "ok"


def _number(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    return f"{float(value):.{digits}f}"


def _qc(segment: dict[str, Any]) -> str:
    qc = segment.get("qc")
    if qc is None:
        return ""
    if isinstance(qc, dict):
        flags = qc.get("flags")
        status = qc.get("status")
        if flags:
            return ", ".join(str(f) for f in flags)
        return str(status or _OK)
    if isinstance(qc, list):
        return ", ".join(str(f) for f in qc) or _OK
    return str(qc)


def _suv_label(segments: list[dict[str, Any]]) -> str:
    for segment in segments:
        suv_type = (segment.get("pet") or {}).get("suv_type")
        if suv_type:
            return f"SUV{suv_type}"
    return "SUV"


def rows(measurements: dict[str, Any]) -> list[list[str]]:
    """The table, header first, as cells."""
    segments: list[dict[str, Any]] = measurements.get("segments") or []
    pet = any(s.get("pet") for s in segments)
    unit = next((s["intensity"]["unit"] for s in segments if s.get("intensity")), "")
    if pet:
        unit = _suv_label(segments)
    header = ["STRUCTURE", "VOLUME (mL)", f"MEAN ({unit})" if unit else "MEAN"]
    if pet:
        header += [f"MAX ({unit})", "MTV (mL)", "TLG (g)", "LESIONS"]
    with_qc = any("qc" in s for s in segments)
    if with_qc:
        header.append("QC")
    table = [header]
    for segment in segments:
        intensity = segment.get("intensity") or {}
        row = [
            str(segment.get("name", segment.get("segment_number", "?"))),
            _number(segment.get("volume_ml"), 1),
            _number(intensity.get("mean"), 2 if pet else 1),
        ]
        if pet:
            measures = segment.get("pet") or {}
            row += [
                _number(measures.get("suv_max"), 2),
                _number(measures.get("mtv_ml"), 1),
                _number(measures.get("tlg"), 1),
                str(measures.get("lesion_count", "-")),
            ]
        if with_qc:
            row.append(_qc(segment))
        table.append(row)
    return table


def render(measurements: dict[str, Any], indent: str = "  ") -> str:
    """The table as aligned text: names left, numbers right."""
    table = rows(measurements)
    if len(table) == 1:
        return f"{indent}no structure found"
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [
            cell.ljust(width) if i == 0 or (i == len(row) - 1 and table[0][i] == "QC")
            else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]  # fmt: skip
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)
