"""Write the result files of one segmented series: SEG, RTSTRUCT, TID 1500 SR and JSON.

Shared by ``fedseg convert`` (a given mask) and ``fedseg segment`` / the service's worker (a
predicted label map), so every path writes the same files the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from service.dicom.volume import Volume
from service.errors import ConfigurationError
from service.labels.registry import LabelTable
from service.pet.body_size import SuvType
from service.qc.report import SeriesQc
from service.regions import RegionSet
from service.results.crops import RegionCrop, region_crops
from service.results.kinds import DEFAULT_KINDS, OUTPUT_KINDS, ResultKind
from service.results.measurements import MeasurementReportData, build_report
from service.results.measurements_json import write_measurements_json
from service.results.nifti_labels import write_volume_labels
from service.results.provenance import AlgorithmIdentity
from service.results.qc_content import mark_intended_use, mark_rtstruct, mark_seg, sr_quality
from service.results.rtstruct_writer import write_rtstruct
from service.results.seg_writer import SegType, write_seg
from service.results.source_attributes import derived_source
from service.results.sources import Sources, checked_sources
from service.results.sr_writer import write_sr

logger = logging.getLogger(__name__)


#: ``--formats json`` is the older name of ``measurements``.
_ALIASES = {"json": ResultKind.MEASUREMENTS}


def parse_formats(text: str) -> list[ResultKind]:
    """Parse a comma-separated list of result kinds; the SR references SEG segments.

    Raises
    ------
    ConfigurationError
        If a kind is unknown or SR is asked for without SEG.
    """
    known = ", ".join(k.value for k in OUTPUT_KINDS)
    formats = []
    for name in (f.strip().lower() for f in text.split(",") if f.strip()):
        kind = _ALIASES.get(name) or next((k for k in OUTPUT_KINDS if k.value == name), None)
        if kind is None:
            raise ConfigurationError(
                f"--formats {text!r}: {name!r} is unknown; choose among {known}"
            )
        formats.append(kind)
    if not formats:
        raise ConfigurationError(f"--formats is empty; choose among {known}")
    if ResultKind.SR in formats and ResultKind.SEG not in formats:
        raise ConfigurationError("--formats sr needs seg too: the SR references SEG segments")
    return formats


@dataclass(frozen=True)
class OutputOptions:
    """What to write and how."""

    formats: Sequence[ResultKind] = DEFAULT_KINDS
    seg_type: SegType = SegType.BINARY
    suv_type: SuvType = SuvType.BW


@dataclass
class WrittenOutputs:
    """The files written for one series, the measurements they hold, and what was changed."""

    paths: dict[ResultKind, Path]
    report: MeasurementReportData | None
    warnings: list[str] = field(default_factory=list)


def write_outputs(
    volume: Volume,
    regions: RegionSet | np.ndarray,
    table: LabelTable,
    algorithm: AlgorithmIdentity,
    out_dir: Path,
    options: OutputOptions | None = None,
    values: np.ndarray | None = None,
    qc: SeriesQc | None = None,
    sources: Sources | None = None,
) -> WrittenOutputs:
    """Write the chosen result files for ``regions`` (or a label map) on ``volume``.

    The regions are cut to their bounding boxes once (a label map one value at a time), and
    every writer works on those crops, so no full-size mask per structure is kept. Regions are
    told apart by number, so segments that share a label stay separate. ``values`` is the image
    already in the unit measured (SUV of ``options.suv_type`` for PET), when the caller has it.
    ``sources`` are the series the regions were derived from, ``volume``'s first (a
    multi-channel model's further channels after it); every file references all of them.
    """
    options = options or OutputOptions()
    sources = checked_sources(volume, sources)
    formats = list(options.formats)
    notes = list(derived_source(volume).notes)
    for note in notes:  # names the attribute, never its value
        logger.warning("series %s: %s", volume.series_instance_uid, note)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[ResultKind, Path] = {}
    dicom_or_json = set(formats) - {ResultKind.NIFTI}
    crops = list(region_crops(regions, volume, table)) if dicom_or_json else []
    # Structures the QC policy withholds stay out of what goes to PACS and planning systems.
    withheld = qc.withheld_numbers if qc else set()
    delivered = [c for c in crops if c.number not in withheld]
    numbers = {r.number: n for n, r in enumerate(crops, start=1)}
    seg = None
    if ResultKind.SEG in formats and delivered:
        result = write_seg(volume, delivered, table, algorithm, options.seg_type, sources=sources)
        seg = result.dataset
        mark_seg(seg, algorithm, qc, result.segment_numbers)
        numbers = _after(result.segment_numbers, crops)  # withheld ones: numbers after the SEG's
        paths[ResultKind.SEG] = _save(seg, out_dir / ResultKind.SEG.filename)
    if ResultKind.RTSTRUCT in formats and delivered:
        written = write_rtstruct(volume, delivered, table, algorithm, sources=sources)
        mark_rtstruct(written.dataset, algorithm, qc, written.roi_numbers)
        paths[ResultKind.RTSTRUCT] = _save(written.dataset, out_dir / ResultKind.RTSTRUCT.filename)
    report = None
    if ResultKind.SR in formats or ResultKind.MEASUREMENTS in formats:
        name = f"{algorithm.name} {algorithm.version}"
        report = build_report(volume, crops, numbers, name, options.suv_type, values)
        if ResultKind.SR in formats and (seg is not None or withheld):
            quality = sr_quality(qc, crops, numbers) if qc else None
            slabs = {numbers[c.number]: (c.offset[2], c.offset[2] + c.mask.shape[2]) for c in crops}
            sr = write_sr(
                volume, seg, report, algorithm, quality=quality, sources=sources, slabs=slabs
            )
            mark_intended_use(sr, algorithm)
            paths[ResultKind.SR] = _save(sr, out_dir / ResultKind.SR.filename)
        if ResultKind.MEASUREMENTS in formats:
            json_path = out_dir / ResultKind.MEASUREMENTS.filename
            extra = _json_extra(algorithm, qc, sources)
            paths[ResultKind.MEASUREMENTS] = write_measurements_json(report, json_path, extra)
    if ResultKind.NIFTI in formats:  # a local label map: it keeps every structure
        path = out_dir / ResultKind.NIFTI.filename
        paths[ResultKind.NIFTI] = write_volume_labels(path, regions, volume, table)[0]
    return WrittenOutputs(paths=paths, report=report, warnings=notes)


def _after(numbers: dict[int, int], crops: list[RegionCrop]) -> dict[int, int]:
    """``numbers`` with every other crop numbered after them (measured, not in the SEG)."""
    out = dict(numbers)
    for crop in crops:
        if crop.number not in out:
            out[crop.number] = max(out.values(), default=0) + 1
    return out


def _json_extra(
    algorithm: AlgorithmIdentity, qc: SeriesQc | None, sources: Sources
) -> dict[str, object]:
    extra: dict[str, object] = {
        "source_series": [
            {"series_instance_uid": s.series_instance_uid, "modality": s.modality}
            for s in sources.series
        ]
    }
    if algorithm.intended_use:
        extra["intended_use"] = algorithm.intended_use
    if qc is not None:
        extra["qc"] = qc.as_dict()
    return extra


def _save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path
