"""What a site declares in its SuperNode node config, and the cases it trains on.

A site names itself and the task heads it holds labels for; the server builds the model from
the union of the declarations. Data either comes from a folder of cases (the training layer's
readers) or, for pilots and tests, from in-memory phantoms of a given seed and site.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from federation.errors import FederationError, validation_message
from training.phantoms.config import ORGAN_VALUES, PhantomConfig, PhantomModality, Size

if TYPE_CHECKING:
    from training.tasks import Task

PHANTOM_DATA = "phantom"


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class SiteSpec(BaseModel):
    """A site's declaration, parsed once from its SuperNode's node config.

    Parameters
    ----------
    name
        Short site name (node config ``site``), shown in logs and the model registry (never a
        patient identifier).
    tasks
        Heads the site holds labels for; canonical organ names for ``ct-organs`` sites
        (node config ``tasks="a,b"``). A ``dataset build`` folder in nnU-Net mode says its
        labels itself; given there, they must be the folder's.
    data
        ``"phantom"`` or a folder of training cases (nnU-Net mode: a folder written by
        ``fedseg dataset build --format nnunet``).
    work_dir
        nnU-Net mode: where the site keeps its preprocessed cases (node config ``work-dir``).
    validation_fraction
        nnU-Net mode: share of the site's cases held out of training for the federated
        evaluation (:func:`federation.nnunet.site.validation_split`).
    """

    model_config = ConfigDict(
        frozen=True, alias_generator=_kebab, validate_by_name=True, extra="forbid"
    )

    name: str = Field("", alias="site")
    tasks: tuple[str, ...] = ()
    data: str = PHANTOM_DATA
    phantom_seed: int = 0
    phantom_site: int = 1
    cases: int = 2
    spacing_mm: float = 12.0
    work_dir: str = ""
    validation_fraction: float = 0.2

    @field_validator("tasks", mode="before")
    @classmethod
    def _split_tasks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> SiteSpec:
        if not self.name:
            raise FederationError('node config needs site="<name>"')
        if not self.tasks and self.data == PHANTOM_DATA:
            raise FederationError(f'site {self.name}: node config needs tasks="a,b"')
        unknown = [t for t in self.tasks if t not in ORGAN_VALUES]
        if unknown:
            raise FederationError(
                f"site {self.name}: unknown tasks {unknown}; use canonical organ names "
                f"({', '.join(ORGAN_VALUES)})"
            )
        if self.cases < 1 or self.spacing_mm <= 0:
            raise FederationError(f"site {self.name}: cases and spacing-mm must be positive")
        if not 0 <= self.validation_fraction < 1:
            raise FederationError(
                f"site {self.name}: validation-fraction must lie in [0, 1), got "
                f"{self.validation_fraction}"
            )
        return self

    @classmethod
    def from_node_config(cls, config: Mapping[str, object]) -> SiteSpec:
        """Parse the node config (``site``, ``tasks``, ``data``, ``cases``, ``spacing-mm``...).

        Raises
        ------
        FederationError
            Naming each invalid key and why.
        """
        try:
            return cls.model_validate(dict(config))
        except ValidationError as exc:
            raise FederationError(f"invalid node config: {validation_message(exc)}") from exc


@dataclass(frozen=True)
class SiteCase:
    """One case on the training grid: normalised image and organ label map.

    ``annotated`` lists the organs the case's site labels (None: all); an unannotated organ's
    target is empty, which is what naive pooling of partially labelled data trains on.
    """

    image: np.ndarray
    organs: np.ndarray
    annotated: frozenset[str] | None = None
    #: Label value of each head name (the canonical ct-organs values by default).
    values: Mapping[str, int] = field(default_factory=lambda: ORGAN_VALUES)

    def target(self, organ: str) -> np.ndarray:
        """Binary mask of ``organ`` (all zero when the case does not annotate it)."""
        if self.annotated is not None and organ not in self.annotated:
            return np.zeros(self.organs.shape, dtype=np.int64)
        return (self.organs == self.values[organ]).astype(np.int64)


def site_task(spacing_mm: float) -> Task:
    """The ``ct-organs`` task at the sites' training grid (isotropic ``spacing_mm``).

    The exported bundle's manifest uses the same task, so the service resamples as the sites do.
    """
    from training.tasks import get_task

    return dataclasses.replace(
        get_task("ct-organs"), spacing=(spacing_mm,) * 3, patch_size=(16, 16, 16)
    )


def prepare_case(
    image: np.ndarray, affine: np.ndarray, organs: np.ndarray, spacing_mm: float
) -> SiteCase:
    """Reorient, resample and normalise a CT case as the training layer does."""
    from training.data.preprocess import prepare

    prepared = prepare(image, affine, organs, site_task(spacing_mm))
    assert prepared.labels is not None
    return SiteCase(prepared.image, prepared.labels)


def phantom_cases(
    config: PhantomConfig, site: int, cases: Sequence[int], spacing_mm: float
) -> list[SiteCase]:
    """Phantom CT cases of ``site`` (1-based) generated in memory."""
    from training.phantoms import make_case

    out = []
    for number in cases:
        ct = make_case(config, site, number).ct
        if ct is None:
            raise FederationError("the phantom configuration must include CT")
        out.append(prepare_case(ct.hu, ct.grid.affine, ct.organs, spacing_mm))
    return out


def tiny_phantoms(seed: int, sites: int) -> PhantomConfig:
    """The CT-only tiny phantom configuration pilots and tests use."""
    return PhantomConfig(sites=sites, seed=seed, size=Size.TINY, modalities=(PhantomModality.CT,))


def load_site_cases(spec: SiteSpec) -> list[SiteCase]:
    """The training cases of ``spec``.

    A site folder built by ``fedseg dataset build`` says which organs each case contoured; the
    others are unknown in that case (its heads get no loss from it), not background.

    Raises
    ------
    FederationError
        If the data folder holds no readable cases.
    """
    if not spec.tasks:
        raise FederationError(
            f'site {spec.name}: node config needs tasks="a,b" for the U-Net (only nnU-Net '
            "mode reads the labels from the dataset folder)"
        )
    if spec.data == PHANTOM_DATA:
        config = tiny_phantoms(spec.phantom_seed, spec.phantom_site)
        return phantom_cases(config, spec.phantom_site, range(1, spec.cases + 1), spec.spacing_mm)
    from training.data import discover_cases, load_case
    from training.sitedata import is_site_folder
    from training.tasks import get_task

    # A built site folder must hold ct-organs cases, the federation's task.
    task = get_task("ct-organs") if is_site_folder(Path(spec.data)) else None
    try:
        sources = discover_cases(Path(spec.data), spec.name, task)
    except FileNotFoundError as exc:
        raise FederationError(f"site {spec.name}: {exc}") from exc
    out = []
    for source in sources[: spec.cases]:
        case = load_case(source, modality="CT")
        if case.labels is None:
            raise FederationError(f"site {spec.name}: case {source.case_id} has no label map")
        prepared = prepare_case(case.image, case.affine, case.labels, spec.spacing_mm)
        out.append(dataclasses.replace(prepared, annotated=_annotated(source.annotated)))
    contoured = set().union(*(c.annotated or set(spec.tasks) for c in out))
    if not contoured & set(spec.tasks):
        raise FederationError(
            f"site {spec.name}: no case in {spec.data} contours any of its tasks "
            f"{', '.join(spec.tasks)} (contoured: {', '.join(sorted(contoured)) or 'nothing'})"
        )
    return out


def _annotated(numbers: Sequence[int] | None) -> frozenset[str] | None:
    """Organ names of ``ct-organs`` label numbers (a built site folder's contoured labels)."""
    if numbers is None:
        return None
    names = {value: name for name, value in ORGAN_VALUES.items()}
    return frozenset(names[n] for n in numbers)
