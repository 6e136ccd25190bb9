"""Errors of the instance store and ingest."""

from __future__ import annotations

from service.errors import DicomInputError


class InstanceRejectedError(DicomInputError):
    """A received object is not a storable DICOM instance (the reason says why)."""
