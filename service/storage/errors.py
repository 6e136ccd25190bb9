"""Errors of the instance store and ingest."""

from __future__ import annotations

from service.errors import DicomInputError, FedsegError


class InstanceRejectedError(DicomInputError):
    """A received object is not a storable DICOM instance (the reason says why)."""


class InsufficientStorageError(FedsegError):
    """Storing the object would leave less free disk space than the configured reserve."""

    http_status = 507
