"""Task definitions: what each model segments, at what spacing and with which normalisation.

The service's label tables are the one source of labels: a task's classes are its table's
label numbers and names (``service/labels/tables/<task>.json``), its name is the service's
:class:`~service.labels.Task` and its normalisation the manifest's
:class:`~service.inference.manifest.NormalisationKind`, so training, export and inference cannot
disagree about which class is which organ. This module imports neither torch nor MONAI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from service.inference.manifest import NormalisationKind
from service.labels.registry import Task as TaskName
from service.labels.registry import get_table

#: How image intensities become network inputs (the manifest's kinds).
Normalisation = NormalisationKind

__all__ = ["LESION_CLASSES", "TASKS", "Normalisation", "Task", "TaskName", "get_task"]


@dataclass(frozen=True)
class Task:
    """One segmentation task: label table, modality and preprocessing.

    ``labels`` maps class index (1..n, background 0 implied) to the canonical label name, as
    the task's label table numbers and names them.
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


def table_labels(name: TaskName) -> Mapping[int, str]:
    """Class index → label name, from the service's label table of ``name``."""
    table = get_table(name)
    return MappingProxyType({e.number: e.name for e in table.labels})


#: Lesion classes of the classification head, in output order.
LESION_CLASSES = ("benign", "malignant")

TASKS: Mapping[TaskName, Task] = MappingProxyType(
    {
        TaskName.CT_ORGANS: Task(
            name=TaskName.CT_ORGANS,
            modality="CT",
            labels=table_labels(TaskName.CT_ORGANS),
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
            labels=table_labels(TaskName.PET_LESION),
            spacing=(4.0, 4.0, 4.0),
            patch_size=(32, 32, 32),
            normalisation=Normalisation.SUV,
            intensity_range=(0.0, 10.0),
            description="FDG-avid tumour on PET in SUV",
        ),
        TaskName.MR_TUMOUR: Task(
            name=TaskName.MR_TUMOUR,
            modality="MR",
            labels=table_labels(TaskName.MR_TUMOUR),
            # The phantom MR has 3.5-4.4 mm pixels and 5-7 mm slices; a finer grid only costs.
            spacing=(3.0, 3.0, 3.0),
            patch_size=(48, 48, 48),
            normalisation=Normalisation.ZSCORE,
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
    except (ValueError, KeyError) as exc:
        known = ", ".join(t.value for t in TASKS)
        raise ValueError(f"unknown task {name!r}; choose one of {known}") from exc
