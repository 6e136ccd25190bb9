"""Write the result files of one segmented series: SEG, RTSTRUCT, TID 1500 SR and JSON.

Shared by ``fedseg convert`` (a given mask) and ``fedseg segment`` / the service's worker (a
predicted label map), so every path writes the same files the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydicom.dataset import Dataset

from service.dicom.volume import Volume
from service.errors import ConfigurationError
from service.labels.registry import LabelTable
from service.pet.body_size import SuvType
from service.qc.enum import QcPolicy
from service.qc.report import SeriesQc
from service.results.crops import Labels, RegionCrop, region_crops
from service.results.measurements import MeasurementReportData, build_report
from service.results.measurements_json import write_measurements_json
from service.results.provenance import AlgorithmIdentity
from service.results.rtstruct_writer import write_rtstruct
from service.results.seg_writer import SegType, write_seg
from service.results.sr_writer import write_sr


class OutputFormat(StrEnum):
    """A result file, and the name it gets in the output folder."""

    SEG = "seg"
    RTSTRUCT = "rtstruct"
    SR = "sr"
    JSON = "json"

    @property
    def filename(self) -> str:
        """File name in the output folder."""
        return "measurements.json" if self is OutputFormat.JSON else f"{self.value}.dcm"


ALL_FORMATS = (OutputFormat.SEG, OutputFormat.RTSTRUCT, OutputFormat.SR, OutputFormat.JSON)


def parse_formats(text: str) -> list[OutputFormat]:
    """Parse a comma-separated format list; the SR references SEG segments, so it needs the SEG.

    Raises
    ------
    ConfigurationError
        If a format is unknown or SR is asked for without SEG.
    """
    try:
        formats = [OutputFormat(f.strip().lower()) for f in text.split(",") if f.strip()]
    except ValueError as exc:
        known = ", ".join(f.value for f in OutputFormat)
        raise ConfigurationError(f"--formats {text!r}: {exc}; choose among {known}") from exc
    if not formats:
        raise ConfigurationError("--formats is empty")
    if OutputFormat.SR in formats and OutputFormat.SEG not in formats:
        raise ConfigurationError("--formats sr needs seg too: the SR references SEG segments")
    return formats


@dataclass(frozen=True)
class OutputOptions:
    """What to write and how."""

    formats: Sequence[OutputFormat] = ALL_FORMATS
    seg_type: SegType = SegType.BINARY
    suv_type: SuvType = SuvType.BW


@dataclass
class WrittenOutputs:
    """The files written for one series, and the measurements they hold."""

    paths: dict[OutputFormat, Path]
    report: MeasurementReportData | None


def write_outputs(
    volume: Volume,
    regions: Labels,
    table: LabelTable,
    algorithm: AlgorithmIdentity,
    out_dir: Path,
    options: OutputOptions | None = None,
    qc: SeriesQc | None = None,
) -> WrittenOutputs:
    """Write the chosen result files for ``regions`` (or a label map) on ``volume``.

    The regions are cut to their bounding boxes once (a label map one value at a time), and
    every writer works on those crops, so no full-size mask per structure is kept. With
    ``qc``, structures its policy withholds stay out of the SEG and RTSTRUCT (which go to PACS
    and planning systems), while the SR and JSON report every structure with its QC.
    """
    options = options or OutputOptions()
    formats = list(options.formats)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[OutputFormat, Path] = {}
    crops = list(region_crops(regions, volume, table))
    withheld = set(qc.withheld) if qc else set()
    delivered = [c for c in crops if c.name not in withheld]
    flags = _flags(qc, crops)
    numbers = {r.name: n for n, r in enumerate(crops, start=1)}
    seg = None
    if OutputFormat.SEG in formats and delivered:
        result = write_seg(volume, delivered, table, algorithm, options.seg_type, flags=flags)
        seg = result.dataset
        # Withheld structures are still measured (SR, JSON), under numbers after the SEG's.
        numbers = _with_withheld(result.segment_numbers, crops)
        paths[OutputFormat.SEG] = _save(seg, out_dir / OutputFormat.SEG.filename)
    if OutputFormat.RTSTRUCT in formats and delivered:
        note = _withheld_note(qc)
        rtstruct = write_rtstruct(
            volume, delivered, table, algorithm, flags=flags, note=note
        ).dataset
        paths[OutputFormat.RTSTRUCT] = _save(rtstruct, out_dir / OutputFormat.RTSTRUCT.filename)
    report = None
    if OutputFormat.SR in formats or OutputFormat.JSON in formats:
        name = f"{algorithm.name} {algorithm.version}"
        report = build_report(volume, crops, numbers, name, options.suv_type)
        if OutputFormat.SR in formats and (seg is not None or withheld):
            sr = write_sr(volume, seg, report, algorithm, qc=qc, table=table)
            paths[OutputFormat.SR] = _save(sr, out_dir / OutputFormat.SR.filename)
        if OutputFormat.JSON in formats:
            json_path = out_dir / OutputFormat.JSON.filename
            extra = _json_extra(algorithm, qc)
            paths[OutputFormat.JSON] = write_measurements_json(report, json_path, extra)
    return WrittenOutputs(paths=paths, report=report)


def _flags(qc: SeriesQc | None, crops: list[RegionCrop]) -> dict[str, str]:
    """QC texts of flagged structures that are sent (policy ``flag``; withheld ones are not)."""
    if qc is None or qc.policy is not QcPolicy.FLAG:
        return {}
    return {c.name: qc.flag_text(c.name) for c in crops if qc.flag_text(c.name)}


def _with_withheld(numbers: dict[str, int], crops: list[RegionCrop]) -> dict[str, int]:
    out = dict(numbers)
    for crop in crops:
        if crop.name not in out:
            out[crop.name] = max(out.values(), default=0) + 1
    return out


def _withheld_note(qc: SeriesQc | None) -> str:
    if qc is None or not qc.withheld:
        return ""
    return f"withheld by QC (see the SR): {', '.join(qc.withheld)}"


def _json_extra(algorithm: AlgorithmIdentity, qc: SeriesQc | None) -> dict[str, object]:
    extra: dict[str, object] = {}
    if algorithm.intended_use:
        extra["intended_use"] = algorithm.intended_use
    if qc is not None:
        extra["qc"] = qc.as_dict()
    return extra


def _save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path
