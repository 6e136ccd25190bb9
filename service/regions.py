"""Numbered binary regions on an image grid: what the mask readers return and the writers take.

A region is identified by its ``number`` (the SEG segment number, RTSTRUCT ROI number or label
value), never by its name: a DICOM-SEG may give ten metastases the same SegmentLabel. The name
is the label shown to people; :func:`distinct_names` makes it unique where a format needs that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.errors import MaskInputError
from service.labels.registry import LabelEntry, LabelTable


@dataclass
class Region:
    """One segment or ROI as a boolean mask on the target volume grid ``[i, j, k]``."""

    name: str
    number: int
    mask: np.ndarray
    code: LabelEntry | None = None

    def __post_init__(self) -> None:
        if self.mask.ndim != 3:
            raise ValueError(f"region {self.name!r}: mask must be 3-D, got {self.mask.ndim}-D")
        if self.number < 1:
            raise ValueError(f"region {self.name!r}: number must be >= 1, got {self.number}")
        self.mask = np.asarray(self.mask, dtype=bool)

    @property
    def voxel_count(self) -> int:
        """Number of voxels inside the region."""
        return int(np.count_nonzero(self.mask))


@dataclass
class RegionSet:
    """The regions read from one mask file, all on one grid (``shape`` and voxel→LPS ``affine``)."""

    regions: list[Region]
    shape: tuple[int, int, int]
    affine: np.ndarray
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    #: Structures the file declares but the reader refused (number → why), e.g. an RTSTRUCT
    #: ROI with a contour off the image's slices; they are not among ``regions``.
    refused: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shape = (int(self.shape[0]), int(self.shape[1]), int(self.shape[2]))
        for region in self.regions:
            if region.mask.shape != self.shape:
                raise ValueError(
                    f"region {region.name!r} has shape {region.mask.shape}, grid is {self.shape}"
                )
        numbers = [r.number for r in self.regions]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"region numbers repeat: {numbers}")

    def __len__(self) -> int:
        return len(self.regions)

    def __iter__(self) -> Iterator[Region]:
        """Iterate over the regions."""
        return iter(self.regions)

    @property
    def names(self) -> list[str]:
        """Region names in file order (names may repeat)."""
        return [r.name for r in self.regions]

    def get(self, name: str) -> Region:
        """The one region called ``name``.

        Raises
        ------
        MaskInputError
            If no region, or more than one, has that name (then select by number).
        """
        found = [region for region in self.regions if region.name == name]
        if len(found) == 1:
            return found[0]
        if found:
            numbers = ", ".join(str(r.number) for r in found)
            raise MaskInputError(
                f"{self.source or 'mask'}: {len(found)} regions are named {name!r} "
                f"(numbers {numbers}); select one by number"
            )
        raise MaskInputError(
            f"{self.source or 'mask'}: no region named {name!r} (found: {', '.join(self.names)})"
        )

    def by_number(self, number: int) -> Region:
        """The region with ``number``; raises :class:`MaskInputError` listing the numbers."""
        for region in self.regions:
            if region.number == number:
                return region
        known = ", ".join(str(r.number) for r in self.regions)
        raise MaskInputError(f"{self.source or 'mask'}: no region number {number} (found: {known})")

    def masks(self) -> dict[int, np.ndarray]:
        """Region number → boolean mask."""
        return {r.number: r.mask for r in self.regions}

    def overlaps(self) -> bool:
        """Whether any voxel belongs to more than one region."""
        if not self.regions:
            return False
        total = np.sum([r.mask for r in self.regions], axis=0, dtype=np.int32)
        return bool(np.any(total > 1))

    def to_label_map(self, dtype: type = np.uint16) -> np.ndarray:
        """Label map with each region's ``number`` (0 = background).

        Raises
        ------
        MaskInputError
            If regions overlap (a label map cannot hold them).
        """
        labels: np.ndarray = np.zeros(self.shape, dtype=dtype)
        for region in self.regions:
            if np.any(labels[region.mask]):
                raise MaskInputError(
                    f"{self.source or 'mask'}: region {region.name!r} overlaps another; "
                    "overlapping regions cannot form one label map"
                )
            labels[region.mask] = region.number
        return labels

    @classmethod
    def from_label_map(
        cls,
        labels: np.ndarray,
        affine: np.ndarray,
        table: LabelTable | None = None,
        source: str = "",
    ) -> RegionSet:
        """One region per non-zero value; names from ``table`` when given, else ``label_<n>``."""
        if labels.ndim != 3:
            raise MaskInputError(
                f"{source or 'label map'}: expected 3-D labels, got {labels.shape}"
            )
        if np.issubdtype(labels.dtype, np.floating) and (
            not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
        ):
            raise MaskInputError(f"{source or 'label map'}: label values must be integers")
        values = [int(v) for v in np.unique(labels) if v != 0]
        if any(v < 0 for v in values):
            raise MaskInputError(f"{source or 'label map'}: negative label values {values}")
        regions = []
        for value in values:
            entry = label_entry(table, value, source)
            name = entry.name if entry else f"label_{value}"
            regions.append(Region(name=name, number=value, mask=labels == value, code=entry))
        return cls(regions=regions, shape=labels.shape, affine=affine, source=source)


def label_entry(table: LabelTable | None, value: int, source: str = "") -> LabelEntry | None:
    """The entry of label ``value`` in ``table`` (None without a table).

    Raises
    ------
    MaskInputError
        If ``table`` has no label ``value``.
    """
    if table is None:
        return None
    try:
        return table.by_number(value)
    except KeyError as exc:
        raise MaskInputError(
            f"{source or 'label map'}: value {value} is not a label of {table.task} "
            f"(known: {', '.join(table.names)})"
        ) from exc


def distinct_names(names: Sequence[str], max_length: int = 64) -> list[str]:
    """``names`` with repeats numbered: the second "Neoplasm, Secondary" becomes "… 2".

    The first of each name keeps it; a suffix that would pass ``max_length`` (64: DICOM LO)
    shortens the name instead, and a numbered name that is itself taken moves to the next number.
    """
    taken = set(names)
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        if count == 1:
            out.append(name[:max_length])
            continue
        while True:
            suffix = f" {count}"
            candidate = name[: max_length - len(suffix)].rstrip() + suffix
            if candidate not in taken:
                break
            count += 1
        taken.add(candidate)
        out.append(candidate)
    return out
