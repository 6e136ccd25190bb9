"""Configuration of a synthetic multi-site dataset and the canonical label tables it uses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from training.tasks import LESION_CLASSES as LESION_CLASSES
from training.tasks import TASKS, TaskName

#: ``ct-organs`` classes (value → name), from the one task table shared with models and writers.
CT_ORGANS: dict[int, str] = dict(TASKS[TaskName.CT_ORGANS].labels)
ORGAN_VALUES: dict[str, int] = {name: value for value, name in CT_ORGANS.items()}
PET_LESION = dict(TASKS[TaskName.PET_LESION].labels)
MR_TUMOUR = dict(TASKS[TaskName.MR_TUMOUR].labels)

#: SegViz / ConDistFL style partial annotation: site n annotates group n (cycling).
PARTIAL_LABEL_GROUPS: tuple[tuple[str, ...], ...] = (
    ("liver",),
    ("spleen",),
    ("kidney_left", "kidney_right"),
    ("pancreas",),
)
#: Organs a case may lack (nephrectomy, splenectomy).
REMOVABLE_ORGANS = ("kidney_left", "kidney_right", "spleen")


class Size(StrEnum):
    """Image sizes: ``small`` for CPU training and tests, ``full`` for benchmarks."""

    TINY = "tiny"
    SMALL = "small"
    FULL = "full"


class PhantomModality(StrEnum):
    """Series a phantom case can hold."""

    CT = "ct"
    PT = "pt"
    MR = "mr"


@dataclass(frozen=True)
class GridSize:
    """Matrix and slice counts of each modality at one :class:`Size`."""

    ct: tuple[int, int]  # in-plane matrix, slices
    pt: tuple[int, int]
    mr: tuple[int, int]
    ct_thickness_mm: tuple[float, float]  # range a site draws its slice thickness from


GRID_SIZES = {
    Size.TINY: GridSize(ct=(32, 20), pt=(24, 16), mr=(32, 16), ct_thickness_mm=(12.0, 16.0)),
    Size.SMALL: GridSize(ct=(96, 64), pt=(64, 48), mr=(96, 40), ct_thickness_mm=(4.0, 6.0)),
    Size.FULL: GridSize(ct=(512, 300), pt=(192, 200), mr=(384, 120), ct_thickness_mm=(1.0, 1.5)),
}


@dataclass(frozen=True)
class PhantomConfig:
    """What :func:`~training.phantoms.dataset.generate_dataset` produces.

    Parameters
    ----------
    sites, cases_per_site
        Dataset layout.
    seed
        Everything is drawn from ``numpy.random.default_rng`` seeded with this (and the site and
        case numbers), so a seed always gives the same dataset.
    size
        Image size, see :class:`Size`.
    modalities
        Which series each case holds.
    partial_labels
        Annotate only one organ group per site (SegViz/ConDistFL); otherwise every site is fully
        labelled.
    full_label_sites
        With partial labels, this many of the last sites are fully labelled anyway.
    absent_organ_rate
        Probability that a case lacks one removable organ (image and labels).
    pet_noise
        Relative Gaussian noise on PET activity; 0 keeps lesion SUVs exact.
    """

    sites: int = 4
    cases_per_site: int = 2
    seed: int = 0
    size: Size = Size.SMALL
    modalities: tuple[PhantomModality, ...] = (
        PhantomModality.CT,
        PhantomModality.PT,
        PhantomModality.MR,
    )
    partial_labels: bool = True
    full_label_sites: int = 0
    absent_organ_rate: float = 0.25
    pet_noise: float = 0.0
    lesions_per_case: tuple[int, int] = (1, 3)

    def __post_init__(self) -> None:
        if self.sites < 1 or self.cases_per_site < 1:
            raise ValueError("a dataset needs at least one site and one case per site")
        if not 0 <= self.full_label_sites <= self.sites:
            raise ValueError(f"full_label_sites must be within 0..{self.sites}")
        if not 0.0 <= self.absent_organ_rate <= 1.0:
            raise ValueError("absent_organ_rate must be a probability")
        if self.pet_noise < 0:
            raise ValueError("pet_noise must not be negative")
        if not self.modalities:
            raise ValueError("at least one modality is needed")
        if not 0 <= self.lesions_per_case[0] <= self.lesions_per_case[1]:
            raise ValueError("lesions_per_case must be (min, max) with 0 <= min <= max")
        object.__setattr__(self, "size", Size(self.size))
        object.__setattr__(self, "modalities", tuple(PhantomModality(m) for m in self.modalities))

    def annotated_organs(self, site: int) -> tuple[str, ...]:
        """Organs that site ``site`` (1-based) annotates."""
        if not self.partial_labels or site > self.sites - self.full_label_sites:
            return tuple(CT_ORGANS.values())
        return PARTIAL_LABEL_GROUPS[(site - 1) % len(PARTIAL_LABEL_GROUPS)]
