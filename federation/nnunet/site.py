"""The ClientApp's nnU-Net mode: a site's dataset folder, fingerprint, prepared cases and rounds.

The site's node config names its ``fedseg dataset build --format nnunet`` folder (``data``) and
a folder for its preprocessed cases (``work-dir``). Per message from the server:

- query: the labels the site contours and its dataset description (no per-case value);
- ``query.fingerprint``: the fingerprint summary of all its cases (histograms and sums);
- ``train.plans``: the shared plans and the trainer. The site holds ``validation-fraction`` of
  its cases out of training (:func:`validation_split`), prepares the others for the trainer
  (missing labels listed for the marginal loss, or marked ignore for nnU-Net's own trainer) and
  preprocesses them with nnU-Net's preprocessor under
  ``work-dir/nnunet/<SHA-256 of the plans>-<marginal|ignore>/`` once (a later message with the
  same plans, after a restart too, finds them there), and echoes the SHA-256 of the plans text
  it received;
- train: nnU-Net's trainer from the global weights, one nnU-Net epoch of ``local-steps``
  iterations per round, the learning rate decaying over the run's rounds;
- evaluate: nnU-Net's predictor with the global weights on the held-out cases; Dice per label.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flwr.app import RecordDict

from federation.errors import FederationError
from federation.nnunet.fingerprint import FingerprintBins, site_fingerprint_of
from federation.nnunet.plans import SiteDataset
from federation.records import (
    arrays_of,
    declaration_content,
    evaluate_reply,
    fingerprint_reply,
    fingerprint_request_of,
    nnunet_architecture_of,
    plans_of,
    plans_reply,
    round_config_of,
    train_reply,
)
from federation.sites import PHANTOM_DATA, SiteSpec
from training.nnunet.federated_plans import SharedPlans, plans_sha256
from training.nnunet.local_round import PreparedSite

logger = logging.getLogger(__name__)

_MARKER = "prepared.json"


def validation_split(cases: Sequence[str], fraction: float) -> tuple[list[str], list[str]]:
    """Training and validation case ids of a site.

    ``round(fraction * n)`` cases are held out, at least one when ``fraction`` is positive and
    the site has two cases or more, never all of them. They are chosen by the SHA-256 of their
    ids, so the split does not depend on the order the cases are listed in.
    """
    order = sorted(cases, key=lambda case: hashlib.sha256(case.encode("utf-8")).hexdigest())
    count = len(order)
    held = 0 if fraction <= 0 or count < 2 else min(count - 1, max(1, round(fraction * count)))
    return sorted(order[held:]), sorted(order[:held])


@dataclass(frozen=True)
class NnunetSite:
    """A site's nnU-Net dataset folder and work folder, from its node config."""

    name: str
    folder: Path
    work: Path
    validation_fraction: float
    dataset: SiteDataset

    @classmethod
    def of(cls, spec: SiteSpec) -> NnunetSite:
        """Check the node config for nnU-Net mode.

        Raises
        ------
        FederationError
            If ``data`` is not a ``dataset build --format nnunet`` folder, ``work-dir`` is not
            set, or ``tasks`` is given and differs from the folder's labels.
        """
        if spec.data == PHANTOM_DATA or not spec.work_dir:
            raise FederationError(
                f'site {spec.name}: nnU-Net runs need data="<folder>" (built by fedseg dataset '
                'build --format nnunet) and work-dir="<folder>" in the node config'
            )
        folder = Path(spec.data)
        try:
            dataset = SiteDataset.of_folder(folder)
        except (ValueError, KeyError) as exc:
            raise FederationError(f"site {spec.name}: {exc}") from exc
        if spec.tasks and set(spec.tasks) != set(dataset.labels):
            raise FederationError(
                f"site {spec.name}: node config tasks {sorted(spec.tasks)} differ from the labels "
                f"of {folder} {sorted(dataset.labels)}; drop tasks or rebuild the folder"
            )
        return cls(spec.name, folder, Path(spec.work_dir), spec.validation_fraction, dataset)

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the site contours (its selective-aggregation tasks)."""
        return self.dataset.labels


@dataclass(frozen=True)
class PreparedCases:
    """A site's cases laid out and preprocessed for one plans text, and its validation cases."""

    prepared: PreparedSite
    training: tuple[str, ...]
    validation: tuple[str, ...]
    sha256: str


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock: two ClientApp processes of one site never prepare at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepared_cases(site: NnunetSite, text: str, trainer: str) -> PreparedCases:
    """The site's cases preprocessed for the plans ``text`` and the trainer (once; cached).

    Raises
    ------
    FederationError
        If the plans do not fit the site's folder (a label the federation lacks) or nnU-Net
        has no such trainer.
    """
    from training.nnunet.local_round import (
        RoundSettings,
        case_ids,
        partial_labels_of,
        prepare_site,
    )

    digest = plans_sha256(text)
    try:
        partial = partial_labels_of(trainer)
    except ValueError as exc:
        raise FederationError(f"site {site.name}: {exc}") from exc
    folder = site.work / "nnunet" / f"{digest[:16]}-{partial}"
    training, validation = validation_split(case_ids(site.folder), site.validation_fraction)
    shared = SharedPlans.from_json(text)
    with _locked(folder.with_suffix(".lock")):
        marker = folder / _MARKER
        if marker.is_file():
            done = json.loads(marker.read_text())
            if done["sha256"] == digest and done["validation"] == validation:
                prepared = PreparedSite(
                    folder / "nnunet", shared, len(training), frozenset(done["labels"])
                )
                return PreparedCases(prepared, tuple(training), tuple(validation), digest)
        if folder.exists():  # interrupted, or prepared with another validation split
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (folder / "plans.json").write_bytes(text.encode("utf-8"))
        logger.info("preparing %d training cases for plans %s", len(training), digest[:16])
        try:
            settings = RoundSettings(trainer=trainer, partial_labels=partial)
            prepared = prepare_site(site.folder, shared, folder / "nnunet", settings, training)
        except ValueError as exc:
            raise FederationError(f"site {site.name}: {exc}") from exc
        done = {
            "sha256": digest,
            "training": training,
            "validation": validation,
            "labels": sorted(prepared.labels),
        }
        (folder / f"{_MARKER}.part").write_text(json.dumps(done, indent=2))
        (folder / f"{_MARKER}.part").replace(marker)
    return PreparedCases(prepared, tuple(training), tuple(validation), digest)


def declaration(spec: SiteSpec) -> RecordDict:
    """The query reply: the site's labels and its dataset description."""
    site = NnunetSite.of(spec)
    return declaration_content(site.name, site.labels, site.dataset.as_json())


def fingerprint(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """The site's fingerprint summary, sampled as nnU-Net samples the pooled dataset."""
    from training.nnunet.fingerprint import samples_per_case

    site = NnunetSite.of(spec)
    pooled, samples, bins = fingerprint_request_of(content)
    per_case = samples_per_case(pooled, samples)
    widths = FingerprintBins(
        float(bins["intensity"]),
        float(bins["spacing"]),
        int(bins["shape"]),
        float(bins["relative"]),
    )
    summary = site_fingerprint_of(site.folder, per_case, widths)
    logger.info("fingerprint of %d cases, %d samples per case", summary.cases, per_case)
    return fingerprint_reply(site.name, site.labels, summary.as_json())


def prepare(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """Preprocess for the received plans; echo their SHA-256 and the case split."""
    site = NnunetSite.of(spec)
    cases = prepared_cases(site, *plans_of(content))
    return plans_reply(
        site.name, site.labels, cases.sha256, len(cases.training), len(cases.validation)
    )


def train(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """One round of nnU-Net's trainer on the site's training cases from the global weights."""
    from training.nnunet.local_round import RoundSettings, local_round, partial_labels_of

    site = NnunetSite.of(spec)
    config = round_config_of(content)
    text, trainer = nnunet_architecture_of(config.architecture)
    cases = prepared_cases(site, text, trainer)
    settings = RoundSettings(
        epochs=1,
        iterations_per_epoch=config.local_steps,
        rounds=config.num_rounds,
        initial_lr=config.learning_rate,
        seed=config.seed,
        trainer=trainer,
        partial_labels=partial_labels_of(trainer),
    )
    try:
        update = local_round(cases.prepared, arrays_of(content), settings, config.server_round)
    except ValueError as exc:
        raise FederationError(f"site {site.name}: {exc}") from exc
    return train_reply(site.name, site.labels, update.arrays, update.cases, update.loss)


def evaluate(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """Dice per label of the global weights on the site's held-out validation cases."""
    from training.nnunet.validation import validation_dice

    site = NnunetSite.of(spec)
    config = round_config_of(content)
    text, trainer = nnunet_architecture_of(config.architecture)
    cases = prepared_cases(site, text, trainer)
    if not cases.validation:
        logger.warning("site %s holds no validation case; it reports no Dice", site.name)
    scores = validation_dice(
        cases.prepared.shared, arrays_of(content), site.folder, cases.validation, trainer
    )
    return evaluate_reply(site.name, site.labels, scores, len(cases.validation))
