"""The exceptions the service layer raises.

Every error the service reports to a user is one of these. The CLI and the HTTP API translate
them to exit codes and status codes in one place each; library code only raises them.
"""

from __future__ import annotations


class FedsegError(Exception):
    """Base class of every error fedseg reports to a user."""

    exit_code: int = 1


class ConfigurationError(FedsegError):
    """A setting is missing or has a value that cannot be used."""

    exit_code = 2


class DicomInputError(FedsegError):
    """A DICOM input cannot be read: not DICOM, truncated, undecodable or inconsistent."""

    exit_code = 3


class DicomGeometryError(DicomInputError):
    """A series has a geometry that cannot be turned into a trustworthy volume."""


class SuvError(FedsegError):
    """PET values cannot be converted to SUV (a tag is missing or absurd)."""

    exit_code = 4


class MaskInputError(FedsegError):
    """A segmentation (SEG, RTSTRUCT, NIfTI) cannot be read or does not fit its image."""

    exit_code = 5


class ModelBundleError(FedsegError):
    """A model bundle is missing, corrupt or does not match its manifest."""

    exit_code = 6
