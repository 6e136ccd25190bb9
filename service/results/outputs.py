"""Write the result files of one segmented series: SEG, RTSTRUCT, TID 1500 SR and JSON.

Shared by ``fedseg convert`` (a given mask) and ``fedseg segment`` / the service's worker (a
predicted label map), so every path writes the same files the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from service.dicom.volume import Volume
from service.errors import ConfigurationError
from service.labels.registry import LabelTable
from service.masks.regions import RegionSet
from service.pet.body_size import SuvType
from service.results.crops import region_crops
from service.results.measurements import MeasurementReportData, build_report
from service.results.measurements_json import write_measurements_json
from service.results.nifti_labels import write_volume_labels
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
    NIFTI = "nifti"

    @property
    def filename(self) -> str:
        """File name in the output folder (NIfTI: its sidecar is ``labels.json`` beside it)."""
        special = {OutputFormat.JSON: "measurements.json", OutputFormat.NIFTI: "labels.nii.gz"}
        return special.get(self, f"{self.value}.dcm")


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
    regions: RegionSet | np.ndarray,
    table: LabelTable,
    algorithm: AlgorithmIdentity,
    out_dir: Path,
    options: OutputOptions | None = None,
) -> WrittenOutputs:
    """Write the chosen result files for ``regions`` (or a label map) on ``volume``.

    The regions are cut to their bounding boxes once (a label map one value at a time), and
    every writer works on those crops, so no full-size mask per structure is kept.
    """
    options = options or OutputOptions()
    formats = list(options.formats)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[OutputFormat, Path] = {}
    dicom_or_json = set(formats) - {OutputFormat.NIFTI}
    crops = list(region_crops(regions, volume, table)) if dicom_or_json else []
    numbers = {r.name: n for n, r in enumerate(crops, start=1)}
    seg = None
    if OutputFormat.SEG in formats:
        result = write_seg(volume, crops, table, algorithm, options.seg_type)
        seg, numbers = result.dataset, result.segment_numbers
        paths[OutputFormat.SEG] = _save(seg, out_dir / OutputFormat.SEG.filename)
    if OutputFormat.RTSTRUCT in formats:
        rtstruct = write_rtstruct(volume, crops, table, algorithm).dataset
        paths[OutputFormat.RTSTRUCT] = _save(rtstruct, out_dir / OutputFormat.RTSTRUCT.filename)
    report = None
    if OutputFormat.SR in formats or OutputFormat.JSON in formats:
        name = f"{algorithm.name} {algorithm.version}"
        report = build_report(volume, crops, numbers, name, options.suv_type)
        if OutputFormat.SR in formats and seg is not None:
            sr = write_sr(volume, seg, report, algorithm)
            paths[OutputFormat.SR] = _save(sr, out_dir / OutputFormat.SR.filename)
        if OutputFormat.JSON in formats:
            json_path = out_dir / OutputFormat.JSON.filename
            paths[OutputFormat.JSON] = write_measurements_json(report, json_path)
    if OutputFormat.NIFTI in formats:
        path = out_dir / OutputFormat.NIFTI.filename
        paths[OutputFormat.NIFTI] = write_volume_labels(path, regions, volume, table)[0]
    return WrittenOutputs(paths=paths, report=report)


def _save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path
