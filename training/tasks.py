"""Task definitions: what each model segments, at what spacing and with which normalisation.

Label names are the canonical ones shared by the phantoms, the label tables and the DICOM writers
(their SNOMED CT codes live in the service's label registry, keyed by these names). This module
imports neither torch nor MONAI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Normalisation(StrEnum):
    """How image intensities become network inputs."""

    #: Clip HU to a window and scale it to [0, 1].
    CT_WINDOW = "ct-window"
    #: PET already in SUV: divide by a fixed scale, no clipping (SUVmax carries information).
    SUV = "suv"
    #: MR: zero mean, unit variance over the foreground of the image.
    Z_SCORE = "z-score"


class TaskName(StrEnum):
    """The segmentation tasks fedseg trains."""

    CT_ORGANS = "ct-organs"
    PET_LESION = "pet-lesion"
    MR_TUMOUR = "mr-tumour"


@dataclass(frozen=True)
class Task:
    """One segmentation task: label table, modality and preprocessing.

    ``labels`` maps class index (1..n, background 0 implied) to the canonical label name.
    """

    name: TaskName
    modality: str
    labels: Mapping[int, str]
    spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    normalisation: Normalisation
    #: (low, high) window for CT; (0, scale) for SUV; unused for z-score.
    intensity_range: tuple[float, float] = (0.0, 1.0)
    description: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if sorted(self.labels) != list(range(1, len(self.labels) + 1)):
            raise ValueError(f"task {self.name.value}: labels must be numbered 1..n")
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"task {self.name.value}: spacing must be positive")
        if any(p % 8 for p in self.patch_size):
            raise ValueError(f"task {self.name.value}: patch size must be a multiple of 8")
        if self.intensity_range[1] <= self.intensity_range[0]:
            raise ValueError(f"task {self.name.value}: intensity range must be increasing")

    @property
    def num_classes(self) -> int:
        """Output channels of the segmentation head, background included."""
        return len(self.labels) + 1

    def index_of(self, label: str) -> int:
        """Class index of a canonical label name.

        Raises
        ------
        KeyError
            If the task has no such label.
        """
        for index, name in self.labels.items():
            if name == label:
                return index
        raise KeyError(f"task {self.name.value} has no label {label!r}; known: {self.label_names}")

    @property
    def label_names(self) -> tuple[str, ...]:
        """Label names in class order."""
        return tuple(self.labels[i] for i in sorted(self.labels))


CT_ORGAN_LABELS = (
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "pancreas",
    "spinal_cord",
    "lung_left",
    "lung_right",
)

#: Lesion classes of the classification head, in output order.
LESION_CLASSES = ("benign", "malignant")

TASKS: Mapping[TaskName, Task] = MappingProxyType(
    {
        TaskName.CT_ORGANS: Task(
            name=TaskName.CT_ORGANS,
            modality="CT",
            labels=MappingProxyType({i + 1: n for i, n in enumerate(CT_ORGAN_LABELS)}),
            # 4 mm: about the phantom CT's own pixel size; 48³ patches see 19 cm of context.
            spacing=(4.0, 4.0, 4.0),
            patch_size=(48, 48, 48),
            normalisation=Normalisation.CT_WINDOW,
            # Wide enough to keep the lungs (about -850 HU) apart from the air around the body
            # (-1000 HU): a soft-tissue window clips both to 0 and leaves the lungs invisible.
            intensity_range=(-1000.0, 300.0),
            description="abdominal and thoracic organs at risk on CT; sites may label a subset",
        ),
        TaskName.PET_LESION: Task(
            name=TaskName.PET_LESION,
            modality="PT",
            labels=MappingProxyType({1: "lesion"}),
            spacing=(4.0, 4.0, 4.0),
            patch_size=(32, 32, 32),
            normalisation=Normalisation.SUV,
            intensity_range=(0.0, 10.0),
            description="FDG-avid tumour on PET in SUV",
        ),
        TaskName.MR_TUMOUR: Task(
            name=TaskName.MR_TUMOUR,
            modality="MR",
            labels=MappingProxyType({1: "tumour"}),
            # The phantom MR has 3.5-4.4 mm pixels and 5-7 mm slices; a finer grid only costs.
            spacing=(3.0, 3.0, 3.0),
            patch_size=(48, 48, 48),
            normalisation=Normalisation.Z_SCORE,
            description="tumour on MR; the lesion classification head rates it benign/malignant",
        ),
    }
)


def get_task(name: str | TaskName) -> Task:
    """The task called ``name``.

    Raises
    ------
    ValueError
        If no task has that name.
    """
    try:
        return TASKS[TaskName(name)]
    except ValueError as exc:
        known = ", ".join(t.value for t in TaskName)
        raise ValueError(f"unknown task {name!r}; choose one of {known}") from exc
