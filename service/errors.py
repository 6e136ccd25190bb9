"""The exceptions the service layer raises.

Every error the service reports to a user is one of these, and each class carries both its
answers: ``exit_code`` for the ``fedseg`` command (:func:`service.cli.main.main`) and
``http_status`` for the API (one exception handler in :func:`service.api.main.create_app`).
Library code only raises them; neither side inspects messages to choose a code.
"""

from __future__ import annotations


class FedsegError(Exception):
    """Base class of every error fedseg reports to a user."""

    exit_code: int = 1
    #: A server-side failure unless a subclass says the request itself was at fault.
    http_status: int = 500


class ConfigurationError(FedsegError):
    """A setting is missing or has a value that cannot be used."""

    exit_code = 2


class NotFoundError(FedsegError):
    """A named thing (job, model version, stored study) does not exist, or not for this caller."""

    exit_code = 7
    http_status = 404


class ConflictError(FedsegError):
    """The request cannot be done in the current state (already installed, not failed, ...)."""

    exit_code = 8
    http_status = 409


class DicomInputError(FedsegError):
    """A DICOM input cannot be read: not DICOM, truncated, undecodable or inconsistent."""

    exit_code = 3
    http_status = 422


class DicomGeometryError(DicomInputError):
    """A series has a geometry that cannot be turned into a trustworthy volume."""


class SuvError(FedsegError):
    """PET values cannot be converted to SUV (a tag is missing or absurd)."""

    exit_code = 4
    http_status = 422


class MaskInputError(FedsegError):
    """A segmentation (SEG, RTSTRUCT, NIfTI) cannot be read or does not fit its image."""

    exit_code = 5
    http_status = 422


class ModelBundleError(FedsegError):
    """A model bundle is missing, corrupt, does not run, or does not match its manifest."""

    exit_code = 6
    http_status = 422


class ModelOutputError(ModelBundleError, FloatingPointError):
    """A network's outputs on a study cannot become labels (NaN, or beyond float16)."""

    exit_code = 6
    http_status = 422


class ModelConflictError(ModelBundleError, ConflictError):
    """That model version is already installed, or cannot be removed from where it is."""

    exit_code = 6
    http_status = 409
