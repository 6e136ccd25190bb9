"""The kinds of result file a job writes: one list for the writers, the worker, the API and docs."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class ResultKind(StrEnum):
    """A result file, by the name the API serves it under (``/v1/jobs/{id}/results/{kind}``)."""

    SEG = "seg"
    RTSTRUCT = "rtstruct"
    SR = "sr"
    MEASUREMENTS = "measurements"
    SUMMARY = "summary"
    #: A label map in fedseg's axis convention; its sidecar ``labels.json`` names the values.
    NIFTI = "nifti"

    @property
    def filename(self) -> str:
        """File name in a job's output folder."""
        if self is ResultKind.NIFTI:
            return "labels.nii.gz"
        json_kinds = (ResultKind.MEASUREMENTS, ResultKind.SUMMARY)
        return f"{self.value}.json" if self in json_kinds else f"{self.value}.dcm"

    @classmethod
    def of_file(cls, path: Path) -> ResultKind | None:
        """The kind of a written file, by its name; None for a file fedseg does not write."""
        return next((kind for kind in cls if kind.filename == path.name.lower()), None)


#: What ``--formats`` offers: every kind but the study summary, which is always written.
OUTPUT_KINDS = (
    ResultKind.SEG,
    ResultKind.RTSTRUCT,
    ResultKind.SR,
    ResultKind.MEASUREMENTS,
    ResultKind.NIFTI,
)
#: What is written when ``--formats`` is not given: the DICOM results and the measurements.
DEFAULT_KINDS = OUTPUT_KINDS[:4]
