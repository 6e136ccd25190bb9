"""Named binary regions on an image grid: what every mask reader returns."""

from __future__ import annotations

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

    def __iter__(self):  # type: ignore[no-untyped-def]
        """Iterate over the regions."""
        return iter(self.regions)

    @property
    def names(self) -> list[str]:
        """Region names in file order."""
        return [r.name for r in self.regions]

    def get(self, name: str) -> Region:
        """The region called ``name``; raises :class:`MaskInputError` listing the known names."""
        for region in self.regions:
            if region.name == name:
                return region
        raise MaskInputError(
            f"{self.source or 'mask'}: no region named {name!r} (found: {', '.join(self.names)})"
        )

    def masks(self) -> dict[str, np.ndarray]:
        """Name → boolean mask."""
        return {r.name: r.mask for r in self.regions}

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
