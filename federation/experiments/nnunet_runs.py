"""What every ``fedseg experiment … --backend nnunet`` shares: plans, rounds, served models.

- :func:`federation_plans`: the sites' ``dataset build --format nnunet`` folders → their pooled
  fingerprint → nnU-Net's planner → one ``plans.json``, then the same plans with a smaller
  network (:class:`NetworkSize`) so that a shared CPU trains it in minutes.
- :func:`train_validated`: rounds of nnU-Net's trainer through the federation's round step
  (:func:`federation.nnunet.simulation.run_rounds`); every few rounds the global model is served
  and scored on validation cases, and the best round is kept (:class:`ValidatedRun`).
- :class:`ServedModel`: a trained state dict exactly as fedseg serves it. The weights are
  written as nnU-Net's model folder (:func:`training.nnunet.federated_model.write_model_folder`),
  imported into a bundle (:func:`training.nnunet.importer.import_model`, with its ONNX parity
  check) and run by the service's segmenter (:func:`service.inference.pipeline.open_segmenter`)
  on the source grid, with ``fedseg segment``'s defaults (no mirroring).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from federation.nnunet.fingerprint import FingerprintBins, pool, site_fingerprint_of
from federation.nnunet.plans import SiteDataset, federation_dataset_json, plan
from federation.nnunet.simulation import FederatedRun, run_rounds
from federation.round_step import RoundRules
from service.dicom.volume import Volume
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.preprocess import model_values
from service.inference.segmenter import ModelSegmenter
from service.inference.session import Mirroring, SessionOptions
from training.nnunet.federated_model import write_model_folder
from training.nnunet.federated_plans import CONFIGURATION, SharedPlans
from training.nnunet.fingerprint import NNUNET_FOREGROUND_SAMPLES, samples_per_case
from training.nnunet.importer import ImportOptions, import_model
from training.nnunet.local_round import RoundSettings

logger = logging.getLogger(__name__)

#: The service's inference settings, on one thread (a shared CPU).
SESSION = SessionOptions(intra_op_threads=1, inter_op_threads=1, allow_spinning=False)
#: Validation and test run without test-time mirroring (8 network passes a tile on a CPU).
MIRRORING = Mirroring.OFF


@dataclass(frozen=True)
class NetworkSize:
    """The network the experiment trains instead of the planned one (see ``small_network``)."""

    features: tuple[int, ...]
    #: Patch in nnU-Net's axis order (after the planner's ``transpose_forward``).
    patch_size: tuple[int, int, int]
    batch_size: int = 2


def federation_plans(
    folders: Mapping[str, Path],
    name: str,
    network: NetworkSize,
    foreground_samples: float = NNUNET_FOREGROUND_SAMPLES,
    bins: FingerprintBins | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[SharedPlans, SharedPlans]:
    """nnU-Net's plans of the sites' pooled fingerprint, and the same with ``network``.

    ``name`` is nnU-Net's ``DatasetNNN_Name`` of the federation; ``labels`` its labels, by
    default the union of the sites' labels
    (:func:`federation.nnunet.plans.federation_dataset_json`).
    """
    described = [SiteDataset.of_folder(f) for f in folders.values()]
    per_case = samples_per_case(sum(d.cases for d in described), foreground_samples)
    fingerprints = [
        site_fingerprint_of(f, per_case, bins or FingerprintBins()) for f in folders.values()
    ]
    dataset = federation_dataset_json(described, name, labels)
    planned = plan(pool(fingerprints).nnunet_fingerprint(), dataset, name)
    small = planned.with_small_network(network.features, network.patch_size, network.batch_size)
    return planned, small


def _xyz(values: Sequence[float], plans: Mapping[str, Any]) -> str:
    """nnU-Net's (transposed) axis values as ``x × y × z`` of the image."""
    sitk = [0.0] * 3
    for axis, value in zip(plans["transpose_forward"], values, strict=True):
        sitk[axis] = float(value)
    return " × ".join(f"{v:g}" for v in reversed(sitk))


def network_summary(shared: SharedPlans) -> dict[str, str]:
    """Spacing (mm), patch, features, convolutions and batch of the 3d_fullres network."""
    plans = shared.plans
    config = plans["configurations"][CONFIGURATION]
    arch = config["architecture"]["arch_kwargs"]
    return {
        "spacing": _xyz(config["spacing"], plans),
        "patch": _xyz(config["patch_size"], plans),
        "features": "-".join(str(f) for f in arch["features_per_stage"]),
        "convolutions": "-".join(str(n) for n in arch["n_conv_per_stage"]),
        "batch": str(config["batch_size"]),
    }


@dataclass
class ServedModel:
    """A trained state dict as fedseg serves it: model folder → imported bundle → segmenter."""

    bundle: Path
    segmenter: ModelSegmenter
    #: Label name → value in the segmenter's label maps.
    numbers: dict[str, int]

    @classmethod
    def of(
        cls,
        shared: SharedPlans,
        run: FederatedRun,
        folder: Path,
        options: ImportOptions,
        trainer: str,
    ) -> ServedModel:
        """Write ``run``'s global weights as nnU-Net's model folder under ``folder``; import it."""
        model = write_model_folder(
            shared, run.arrays, folder / "results", run.mirror_axes, len(run.rounds), trainer
        )
        path = import_model([model], folder / "bundle", options)
        bundle = ModelBundle.load(path)
        numbers = {e.name: e.number for e in bundle.manifest.label_table().labels}
        return cls(path, open_segmenter(bundle, SESSION, mirroring=MIRRORING), numbers)

    def label_map(self, volume: Volume) -> np.ndarray:
        """The label map the service's segmenter gives on ``volume``'s grid."""
        values = model_values(volume, self.segmenter.bundle.manifest.normalisation)
        return self.segmenter.segment(volume, None, values).labels

    def masks(self, volume: Volume, names: Sequence[str]) -> dict[str, np.ndarray]:
        """One boolean mask per label name, from one segmentation of ``volume``.

        Raises
        ------
        KeyError
            If the model has no label of one of ``names``.
        """
        missing = [n for n in names if n not in self.numbers]
        if missing:
            raise KeyError(
                f"{self.bundle}: no label {missing}; the model segments {sorted(self.numbers)}"
            )
        labels = self.label_map(volume)
        return {n: labels == self.numbers[n] for n in names}


@dataclass(frozen=True)
class MethodRun:
    """What one method trains: its sites' folders, plans, rounds, round rules and bundle name."""

    method: str
    folders: Mapping[str, Path]
    shared: SharedPlans
    settings: RoundSettings
    rules: RoundRules
    #: ``import_model``'s options for the served bundle (name, label table, description).
    options: ImportOptions
    #: Validate every this many rounds (and after the last).
    validate_every: int = 2

    def __post_init__(self) -> None:
        if not self.folders:
            raise ValueError(f"{self.method}: no site folder to train on")
        if self.validate_every < 1:
            raise ValueError(f"{self.method}: validate_every must be positive")


@dataclass
class ValidatedRun:
    """One method's rounds: validation score by round and the served model of the best one."""

    method: str
    #: Validation score (higher is better) of each validated round.
    by_round: dict[int, float] = field(default_factory=dict)
    #: Rounds whose model the import refused (it cannot be served), and why.
    refused: dict[int, str] = field(default_factory=dict)
    #: Mean training loss of the sites, by round.
    losses: list[float] = field(default_factory=list)
    rejected: int = 0
    chosen: int = 0
    served: ServedModel | None = None
    seconds: float = 0.0
    #: The final global weights and the first ones (for checks of the aggregation).
    run: FederatedRun | None = None

    @property
    def validation_score(self) -> float:
        """Validation score of the chosen round."""
        return self.by_round[self.chosen]

    def model(self) -> ServedModel:
        """The chosen round's served model.

        Raises
        ------
        RuntimeError
            If no round was validated (or every validated round's import was refused).
        """
        if self.served is None:
            refused = "; ".join(f"round {r}: {why}" for r, why in self.refused.items())
            raise RuntimeError(f"{self.method} has no servable validated round ({refused})")
        return self.served


def train_validated(
    spec: MethodRun, validate: Callable[[ServedModel], float], work: Path
) -> ValidatedRun:
    """Train ``spec``'s rounds; serve and ``validate`` the global model; keep the best round.

    ``validate`` scores a served model on validation cases only (higher is better); on a tie
    the earlier round is kept. A round whose model ``import_model`` refuses (its ONNX export
    differs from torch beyond the parity tolerance) cannot be served, so it is not a candidate;
    it is recorded in :attr:`ValidatedRun.refused`.
    """
    started = time.perf_counter()
    out = ValidatedRun(spec.method)
    last = spec.settings.rounds

    def after_round(run: FederatedRun) -> None:
        record = run.rounds[-1]
        out.losses.append(float(np.mean(list(record.losses.values()))))
        out.rejected += len(record.rejected)
        number = record.server_round
        if number % spec.validate_every and number != last:
            return
        try:
            served = ServedModel.of(
                spec.shared, run, work / f"round-{number:03d}", spec.options, spec.settings.trainer
            )
        except ModelBundleError as exc:
            out.refused[number] = str(exc)
            logger.warning("%s round %d: not servable: %s", spec.method, number, exc)
            return
        out.by_round[number] = float(validate(served))
        if out.served is None or out.by_round[number] > out.by_round[out.chosen]:
            out.chosen, out.served = number, served
        logger.info("%s round %d: validation %.3f", spec.method, number, out.by_round[number])

    out.run = run_rounds(
        spec.folders, spec.shared, spec.settings, spec.rules, work / "rounds", after_round
    )
    out.seconds = time.perf_counter() - started
    return out


def validated_rounds(runs: Iterable[ValidatedRun]) -> list[int]:
    """Every round some run validated or had refused, in order."""
    return sorted({r for run in runs for r in (*run.by_round, *run.refused)})


def validation_cells(run: ValidatedRun, rounds: Sequence[int]) -> list[str]:
    """A report row's cells: each round's validation score, ``refused`` or ``–``."""
    return [
        f"{run.by_round[r]:.3f}" if r in run.by_round else "refused" if r in run.refused else "–"
        for r in rounds
    ]


def refusal_note(runs: Iterable[ValidatedRun]) -> str:
    """A sentence on the rounds whose import was refused; empty when there were none."""
    count = sum(len(run.refused) for run in runs)
    if not count:
        return ""
    return (
        f"\n\n*refused*: `import_model` refused that round's model ({count} in all: its ONNX "
        "export differed from torch beyond the parity tolerance), so fedseg cannot serve it and "
        "it was no candidate."
    )
