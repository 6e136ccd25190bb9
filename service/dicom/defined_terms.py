"""DICOM defined terms of patient and PET attributes, declared once for readers and writers.

The SUV conversion (:mod:`service.pet.suv`) reads these attributes and the image writer
(:mod:`service.dicom.image_writer`) writes them; both use these enums, so a value one accepts
the other understands.
"""

from __future__ import annotations

from enum import StrEnum


class PatientSex(StrEnum):
    """PatientSex (0010,0040): M, F or O (other)."""

    MALE = "M"
    FEMALE = "F"
    OTHER = "O"


class PetUnits(StrEnum):
    """Units (0054,1001) of PET pixel values, the defined terms of PS3.3 C.8.9.1.1.3."""

    CNTS = "CNTS"
    NONE = "NONE"
    CM2 = "CM2"
    CM2ML = "CM2ML"
    PCNT = "PCNT"
    CPS = "CPS"
    BQML = "BQML"
    MGMINML = "MGMINML"
    UMOLMINML = "UMOLMINML"
    MLMING = "MLMING"
    MLG = "MLG"
    ONE_PER_CM = "1CM"
    UMOLML = "UMOLML"
    PROPCNTS = "PROPCNTS"
    PROPCPS = "PROPCPS"
    MLMINML = "MLMINML"
    MLML = "MLML"
    GML = "GML"
    STDDEV = "STDDEV"


class DecayCorrection(StrEnum):
    """DecayCorrection (0054,1102): the time the image values are decay-corrected to."""

    NONE = "NONE"
    START = "START"
    ADMIN = "ADMIN"
