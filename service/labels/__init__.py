"""Label tables shared by the models, the mask readers and the DICOM writers."""

from service.labels.registry import (
    CodedTerm,
    LabelEntry,
    LabelTable,
    RoiInterpretedType,
    Task,
    get_table,
    load_table,
)

__all__ = [
    "CodedTerm",
    "LabelEntry",
    "LabelTable",
    "RoiInterpretedType",
    "Task",
    "get_table",
    "load_table",
]
