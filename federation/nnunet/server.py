"""The ServerApp's nnU-Net mode: one pooled fingerprint, one plans for every site, nnU-Net bundles.

A fresh run, before round 1:

1. the query: each site declares the labels it contours and describes its dataset
   (:class:`~federation.nnunet.plans.SiteDataset`: channels, labels, file ending, case count);
2. ``query.fingerprint`` names the pooled case count, nnU-Net's foreground sample count and the
   histogram bins; each site replies with its fingerprint summary (histograms and sums, no
   per-case value; :class:`~federation.nnunet.fingerprint.SiteFingerprint`);
3. the server pools the summaries exactly and runs nnU-Net's planner on the pooled fingerprint
   (:func:`~federation.nnunet.plans.plan`); ``nnunet-features``/``nnunet-patch`` replace the
   planned network by a small one;
4. ``train.plans`` sends every site the same plans text; each preprocesses its training cases
   with nnU-Net's preprocessor and echoes the SHA-256 of the text it received. A site whose
   echo differs is left out of the run (it would build another network); fewer than
   ``min-sites`` intact receipts stop it;
5. the first global weights are nnU-Net's initialisation of the trainer's network.

The run state's ``model_config`` holds the plans text
(:func:`~federation.records.nnunet_architecture`), so every checkpoint carries them: a resumed
run sends the same text again (step 4; the sites find their cases preprocessed) and continues
with the next round. The rounds are the round
loop's, with nnU-Net's per-label output split in the round step. At the end the chosen round's
weights are written as nnU-Net's model folder and imported as a bundle
(:func:`training.nnunet.importer.import_model`): the service runs what was trained.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from flwr.app import Message
from flwr.serverapp import Grid

from federation.checkpoint import RunState
from federation.errors import FederationError, PromotionError
from federation.nnunet.aggregation import output_labels, round_aggregator
from federation.nnunet.fingerprint import FingerprintBins, SiteFingerprint, pool
from federation.nnunet.plans import SiteDataset, dataset_name, federation_dataset_json, plan
from federation.records import (
    FINGERPRINT_MESSAGE,
    PLANS_MESSAGE,
    dataset_of,
    fingerprint_of,
    fingerprint_request,
    nnunet_architecture,
    nnunet_architecture_of,
    plans_content,
    plans_receipt_of,
    site_of,
)
from federation.round_step import Aggregate
from federation.rounds import query_replies, send
from federation.settings import RunSettings
from service.errors import ModelBundleError
from training.export import ExportInfo
from training.nnunet.federated_plans import SharedPlans, plans_sha256, small_network

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _parsed(replies: Sequence[Message], what: str, parse: Callable[[Message], T]) -> dict[int, T]:
    """``parse`` of each reply by sender node; a malformed reply is logged and left out."""
    out: dict[int, T] = {}
    for reply in replies:
        node = reply.metadata.src_node_id
        try:
            out[node] = parse(reply)
        except (KeyError, ValueError, TypeError) as exc:
            logger.warning("malformed %s from node %d: %s", what, node, exc)
    return out


class NnunetModel:
    """nnU-Net planned from the sites' pooled fingerprint and trained by nnU-Net's trainer."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings

    def _enough(self, count: int, what: str) -> None:
        if count < self.settings.min_sites:
            raise FederationError(
                f"only {count} sites {what}; {self.settings.min_sites} required (see the "
                "warnings above and the sites' logs)"
            )

    def start(self, grid: Grid, nodes: list[int]) -> RunState:
        """Fingerprint, plan, distribute the plans and initialise the weights."""
        from training.nnunet.federated_model import initial_arrays

        described = _parsed(
            query_replies(grid, nodes, self.settings),
            "dataset description",
            lambda r: (site_of(r)[0], SiteDataset.from_json(dataset_of(r))),
        )
        self._enough(len(described), "described their dataset")
        fingerprints = self._fingerprints(grid, {n: d for n, (_, d) in described.items()})
        datasets = [described[n][1] for n in sorted(fingerprints)]
        shared = self._plan(datasets, [fingerprints[n] for n in sorted(fingerprints)])
        text = shared.as_json()
        trainer = self.settings.nnunet_trainer
        sites = self._distribute(grid, sorted(fingerprints), text, trainer)
        arrays = initial_arrays(shared, self.settings.seed, trainer)
        labels = {d.site: list(d.labels) for d in datasets if d.site in sites}
        logger.info("nnU-Net %s: labels %s from sites %s", shared.dataset_name, labels, sites)
        return RunState(arrays, nnunet_architecture(text, trainer), labels)

    def _fingerprints(
        self, grid: Grid, datasets: dict[int, SiteDataset]
    ) -> dict[int, SiteFingerprint]:
        settings = self.settings
        pooled = sum(d.cases for d in datasets.values())
        bins = FingerprintBins(intensity=settings.fingerprint_bin)
        request = fingerprint_request(pooled, settings.fingerprint_samples, asdict(bins))
        logger.info(
            "asking %d sites for their fingerprint (%d cases pooled)", len(datasets), pooled
        )
        replies = send(grid, datasets, FINGERPRINT_MESSAGE, request, settings.prepare_timeout_s)
        fingerprints = _parsed(
            replies, "fingerprint", lambda r: SiteFingerprint.from_json(fingerprint_of(r))
        )
        wrong = [n for n, f in fingerprints.items() if f.bins != bins]
        for node in wrong:
            logger.warning("node %d summarised with other bins; left out", node)
            del fingerprints[node]
        self._enough(len(fingerprints), "sent a fingerprint")
        return fingerprints

    def _plan(
        self, datasets: list[SiteDataset], fingerprints: list[SiteFingerprint]
    ) -> SharedPlans:
        settings = self.settings
        try:
            name = dataset_name(settings.nnunet_dataset_id, f"Fed {datasets[0].task}")
            dataset = federation_dataset_json(datasets, name)
            shared = plan(
                pool(fingerprints).nnunet_fingerprint(), dataset, name, settings.nnunet_planner
            )
        except ValueError as exc:
            raise FederationError(f"the sites' datasets cannot be planned together: {exc}") from exc
        if settings.nnunet_features:
            plans = small_network(shared.plans, settings.nnunet_features, settings.nnunet_patch)
            shared = SharedPlans(plans, shared.dataset, shared.fingerprint)
        return shared

    def _distribute(self, grid: Grid, nodes: list[int], text: str, trainer: str) -> list[str]:
        """Send the plans text; the sites whose SHA-256 echo matches, sorted."""
        expected = plans_sha256(text)
        content = plans_content(text, trainer)
        replies = send(grid, nodes, PLANS_MESSAGE, content, self.settings.prepare_timeout_s)
        receipts = _parsed(
            replies, "plans receipt", lambda r: (site_of(r)[0], *plans_receipt_of(r))
        )
        intact = []
        for name, digest, training, validation in receipts.values():
            if digest != expected:
                logger.warning(
                    "site %s received plans with SHA-256 %s, not %s", name, digest, expected
                )
                continue
            logger.info("site %s: %d training and %d validation cases", name, training, validation)
            intact.append(name)
        self._enough(len(intact), "received the plans intact")
        logger.info("plans sha256 %s received intact by %s", expected, ", ".join(sorted(intact)))
        return sorted(intact)

    def resume(self, grid: Grid, nodes: list[int], state: RunState) -> None:
        """Send the checkpoint's plans again (the sites find their cases preprocessed)."""
        self._distribute(grid, nodes, *nnunet_architecture_of(state.model_config))

    def aggregator(self, state: RunState) -> Aggregate:
        """The round step on the state dict split per output label (selective by label)."""
        return round_aggregator(output_labels(_shared(state).dataset))

    def bundle_task(self, state: RunState) -> str:
        """``bundle-name``, else ``fedseg-nnunet-<task>`` (an imported bundle's task: its name)."""
        if self.settings.bundle_name:
            return self.settings.bundle_name
        fedseg = _shared(state).dataset.get("fedseg", {})
        return f"fedseg-nnunet-{fedseg.get('task', 'federation')}"

    def export(self, state: RunState, info: ExportInfo, out: Path) -> Path:
        """nnU-Net's model folder of the weights, imported as a bundle at ``out``."""
        from training.nnunet.federated_model import trainer_mirror_axes, write_model_folder
        from training.nnunet.importer import ImportOptions, import_model

        shared = _shared(state)
        _, trainer = nnunet_architecture_of(state.model_config)
        options = ImportOptions(
            name=self.bundle_task(state),
            version=info.version,
            description=f"nnU-Net ({shared.dataset_name}) trained by fedseg's federation of "
            f"{', '.join(info.training_sites)} over {info.federated_rounds} rounds",
            training_sites=tuple(info.training_sites),
            federated_rounds=info.federated_rounds,
            validation_metrics=dict(info.validation_metrics),
            notes=info.notes,
        )
        if out.exists():  # a candidate left by an earlier gate of the same round (never installed)
            shutil.rmtree(out)
        try:
            axes = trainer_mirror_axes(shared, trainer)
            with tempfile.TemporaryDirectory(prefix="nnunet-model-") as scratch:
                folder = write_model_folder(
                    shared, state.arrays, Path(scratch), axes, state.last_round, trainer
                )
                return import_model([folder], out, options)
        except (ModelBundleError, ValueError) as exc:
            raise PromotionError(
                f"round {state.last_round}'s nnU-Net weights could not become a bundle: {exc}"
            ) from exc


def _shared(state: RunState) -> SharedPlans:
    text, _ = nnunet_architecture_of(state.model_config)
    return SharedPlans.from_json(text)
