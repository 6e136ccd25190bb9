"""``pet --backend nnunet``: FDG-PET tumour segmentation on sts-pet with federated nnU-Net.

The 40 sts-pet patients (TCIA Soft-tissue-Sarcoma, Vallières et al. 2015, CC BY 3.0, via the
IBSI validation set) are dealt into three simulated sites with the U-Net backend's seeded split
(:func:`federation.experiments.pet_common.site_split`), so both backends are tested on the same
patients. Inside each site a seeded fifth of its training patients is held out for validation.

Each site's remaining training patients become an nnU-Net dataset through the project's
site-data path (``fedseg dataset build --format nnunet``, task ``pet-lesion``: the RTSTRUCT ROI
``GTV_Mass_PET`` maps to ``lesion``). The sites' fingerprints are pooled on the server and
nnU-Net's planner makes one plans.json from them; its network is then shrunk so that two CPU
cores train it in minutes. Every method trains nnU-Net's own trainer (augmentation, deep
supervision, poly learning rate) through the federation's round step
(:func:`federation.nnunet.simulation.run_rounds`), with the same plans:

- *federated*: FedAvg weighted by cases over the three sites;
- *centralised*: one site holding every training patient, with as many iterations per round as
  the three sites together (the same total);
- *local*: each site alone, with its own iterations of the federated run.

Every few rounds the global model is written as nnU-Net's model folder, imported into a fedseg
bundle (``fedseg import nnunet``) and run by the service's nnU-Net segmenter on the source PET
grid of the validation patients. Each method keeps the round with the best mean validation
Dice (federated and centralised over every validation patient; a local model over its own
site's). Only then are the test patients opened, once: each kept model segments them as fedseg
serves it, and Dice, Jaccard and the relative errors (RE%) of SUVmax, SUVmean, SUVmedian,
SUVpeak, MTV and TLG are computed with the service's PET measures, as in the U-Net backend. A
local model is scored on its own site's test patients. SUV ≥ 2.5 on the whole
(tumour-centred) field of view is the threshold baseline. Methods are compared with the paired
Wilcoxon signed-rank test (|RE| for the relative errors).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from federation.experiments.pet_common import (
    METRICS,
    SiteSplit,
    TestSplit,
    hold_out,
    score,
    site_split,
    threshold_mask,
)
from federation.experiments.report import RunInfo
from federation.nnunet.fingerprint import FingerprintBins, pool, site_fingerprint_of
from federation.nnunet.plans import SiteDataset, dataset_name, federation_dataset_json, plan
from federation.nnunet.simulation import FederatedRun, run_rounds
from federation.round_step import RoundRules
from service.dicom.volume import Volume, read_volume
from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.preprocess import model_values
from service.inference.segmenter import ModelSegmenter
from service.inference.session import Mirroring, SessionOptions
from service.labels import get_table
from training.data.cases import Case, CaseSource, discover_cases, load_case
from training.metrics import dice
from training.nnunet.federated_model import write_model_folder
from training.nnunet.federated_plans import SharedPlans
from training.nnunet.fingerprint import NNUNET_FOREGROUND_SAMPLES, samples_per_case
from training.nnunet.importer import ImportOptions, import_model
from training.nnunet.local_round import TRAINER, RoundSettings
from training.sitedata import BuildOptions, SiteFormat, build_site

logger = logging.getLogger(__name__)

TASK = "pet-lesion"
LESION = "lesion"
FEDERATED, CENTRALISED, LOCAL, THRESHOLD = "federated", "centralised", "local", "SUV ≥ 2.5"
METHODS = (FEDERATED, CENTRALISED, LOCAL, THRESHOLD)
PAIRS = (
    (FEDERATED, CENTRALISED),
    (FEDERATED, LOCAL),
    (FEDERATED, THRESHOLD),
    (CENTRALISED, THRESHOLD),
)
#: The fedseg service's inference settings, on one thread each (a shared CPU).
SESSION = SessionOptions(intra_op_threads=1, inter_op_threads=1, allow_spinning=False)
#: Validation and test run without test-time mirroring (8 network passes a tile on a CPU).
MIRRORING = Mirroring.OFF
DATASET_ID = 710
#: Fingerprint bins: 0.1 SUV intensity bins (percentiles within 0.05 SUV of nnU-Net's).
BINS = FingerprintBins(intensity=0.1)


@dataclass(frozen=True)
class NnunetPetConfig:
    """Size of the experiment (fixed before any test patient is scored)."""

    split: SiteSplit = field(default_factory=SiteSplit)
    #: Share of each site's training patients held out for validation.
    validation_fraction: float = 0.2
    rounds: int = 12
    #: nnU-Net iterations (batch 2) per site and round; centralised: this times the sites.
    iterations: int = 25
    #: Validate the global model every this many rounds (and after the last).
    validate_every: int = 2
    features: tuple[int, ...] = (8, 16, 32, 64)
    #: Patch in nnU-Net's axis order (after the planner's ``transpose_forward``).
    patch_size: tuple[int, int, int] = (32, 48, 32)
    initial_lr: float = 1e-2
    #: Foreground samples of the pooled fingerprint (nnU-Net's own number by default).
    foreground_samples: float = NNUNET_FOREGROUND_SAMPLES
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.rounds, self.iterations, self.validate_every) < 1:
            raise ValueError(f"rounds, iterations and validate_every must be positive: {self}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction lies in (0, 1), got {self.validation_fraction}")


SMOKE = NnunetPetConfig(
    split=SiteSplit(patients=12, test_fraction=0.25),
    rounds=2,
    iterations=2,
    validate_every=2,
    features=(4, 8, 16),
    patch_size=(16, 16, 16),
    foreground_samples=1e4,
)


@dataclass(frozen=True)
class SitePatients:
    """One simulated site's patients."""

    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def site_patients(ids: Sequence[str], config: NnunetPetConfig) -> list[SitePatients]:
    """The U-Net backend's site split, with validation patients held out of each site's training."""
    out = []
    for index, part in enumerate(site_split(ids, config.split)):
        train, validation = hold_out(
            part["train"], config.validation_fraction, config.split.seed, index
        )
        out.append(
            SitePatients(f"site-{index + 1}", tuple(train), tuple(validation), tuple(part["test"]))
        )
    return out


class Patients:
    """sts-pet patients: DICOM folders, volumes as the service reads them, and reference cases."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.sources: dict[str, CaseSource] = {s.case_id: s for s in discover_cases(data)}
        self._cases: dict[str, Case] = {}
        self._volumes: dict[str, Volume] = {}

    def dicom(self, patient: str) -> Path:
        """The patient's DICOM folder (PET series and RTSTRUCT), what a centre exports.

        Raises
        ------
        FileNotFoundError
            If the patient has no DICOM folder.
        """
        folder = self.data / "ibsi_validation" / "dicom" / patient
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: no DICOM for {patient}; the nnU-Net backend builds its site folders "
                "from the PET series and RTSTRUCT of sts-pet's ibsi_validation/dicom"
            )
        return folder

    def case(self, patient: str) -> Case:
        """SUV image and reference mask (the NIfTI mask, as in the U-Net backend)."""
        if patient not in self._cases:
            self._cases[patient] = load_case(self.sources[patient], modality="PT")
        return self._cases[patient]

    def volume(self, patient: str) -> Volume:
        """The PET series as the service reads it."""
        if patient not in self._volumes:
            self._volumes[patient] = read_volume(self.sources[patient].image, modality="PT")
        return self._volumes[patient]

    def truth(self, patient: str) -> np.ndarray:
        """The reference lesion mask on the source PET grid."""
        labels = self.case(patient).labels
        assert labels is not None  # sts-pet cases all carry a mask
        return labels > 0


@dataclass
class Served:
    """A trained state dict as fedseg serves it: model folder → imported bundle → segmenter."""

    bundle: Path
    segmenter: ModelSegmenter
    lesion: int

    @classmethod
    def of(
        cls, shared: SharedPlans, run: FederatedRun, folder: Path, name: str, description: str
    ) -> Served:
        """Write ``run``'s global weights as nnU-Net's model folder and import them."""
        model = write_model_folder(
            shared, run.arrays, folder / "results", run.mirror_axes, len(run.rounds)
        )
        options = ImportOptions(name=name, labels=get_table(TASK), description=description)
        path = import_model([model], folder / "bundle", options)
        bundle = ModelBundle.load(path)
        (lesion,) = [e.number for e in bundle.manifest.label_table().labels if e.name == LESION]
        return cls(path, open_segmenter(bundle, SESSION, mirroring=MIRRORING), lesion)

    def mask(self, volume: Volume) -> np.ndarray:
        """The lesion mask the service's segmenter gives on ``volume``'s grid."""
        values = model_values(volume, self.segmenter.bundle.manifest.normalisation)
        return self.segmenter.segment(volume, None, values).labels == self.lesion


@dataclass
class Trained:
    """One method's run: validation Dice by round and the model of the chosen round."""

    method: str
    sites: int
    iterations_per_round: int
    validation: tuple[str, ...]
    #: Mean validation Dice of each validated round.
    by_round: dict[int, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    rejected: int = 0
    chosen: int = 0
    served: Served | None = None
    seconds: float = 0.0

    @property
    def validation_dice(self) -> float:
        """Mean validation Dice of the chosen round."""
        return self.by_round[self.chosen]

    def model(self) -> Served:
        """The chosen round's served model."""
        if self.served is None:
            raise RuntimeError(f"{self.method} has no validated round")
        return self.served


def _validator(
    trained: Trained, shared: SharedPlans, patients: Patients, config: NnunetPetConfig, work: Path
) -> Callable[[FederatedRun], None]:
    def validate(run: FederatedRun) -> None:
        record = run.rounds[-1]
        trained.losses.append(float(np.mean(list(record.losses.values()))))
        trained.rejected += len(record.rejected)
        number = record.server_round
        if number % config.validate_every and number != config.rounds:
            return
        description = f"sts-pet {trained.method} federated nnU-Net, round {number}"
        name = "pet-nnunet-" + trained.method.replace(" ", "-")
        served = Served.of(shared, run, work / f"round-{number:03d}", name, description)
        scores = [
            dice(served.mask(patients.volume(p)), patients.truth(p)) for p in trained.validation
        ]
        trained.by_round[number] = float(np.mean(scores))
        if trained.served is None or trained.by_round[number] > trained.by_round[trained.chosen]:
            trained.chosen, trained.served = number, served
        logger.info(
            "%s round %d: validation Dice %.3f", trained.method, number, trained.by_round[number]
        )

    return validate


def train_method(
    method: str,
    folders: Mapping[str, Path],
    iterations: int,
    validation: Sequence[str],
    context: tuple[SharedPlans, Patients, NnunetPetConfig],
    work: Path,
) -> Trained:
    """Rounds of nnU-Net's trainer over ``folders`` (FedAvg by cases), validated as served."""
    shared, patients, config = context
    started = time.perf_counter()
    trained = Trained(method, len(folders), iterations, tuple(validation))
    settings = RoundSettings(
        epochs=1,
        iterations_per_epoch=iterations,
        rounds=config.rounds,
        initial_lr=config.initial_lr,
        seed=config.seed,
        # every case contours the lesion: nnU-Net's own trainer, no partial-label loss
        trainer=TRAINER,
        partial_labels="ignore",
    )
    rules = RoundRules(min_sites=len(folders), selective=False, seed=config.seed)
    validate = _validator(trained, shared, patients, config, work)
    run_rounds(folders, shared, settings, rules, work / "rounds", after_round=validate)
    trained.seconds = time.perf_counter() - started
    return trained


def build_folders(
    groups: Mapping[str, Sequence[str]], patients: Patients, work: Path, first_id: int
) -> dict[str, Path]:
    """One ``dataset build --format nnunet`` folder per group of patients (its DICOM exports).

    Raises
    ------
    RuntimeError
        If the build leaves a patient out (its report says why).
    """
    out = {}
    for index, (name, members) in enumerate(groups.items()):
        folder = work / f"Dataset{first_id + index:03d}_{name}"
        options = BuildOptions(
            dicom=tuple(patients.dicom(p) for p in members),
            task=TASK,
            out=folder,
            site=name,
            format=SiteFormat.NNUNET,
        )
        result = build_site(options)
        if len(result.records) != len(members):
            raise RuntimeError(
                f"{name}: dataset build kept {len(result.records)} of {len(members)} patients; "
                f"see {result.report}"
            )
        out[name] = folder
    return out


def federation_plans(
    folders: Mapping[str, Path], config: NnunetPetConfig
) -> tuple[SharedPlans, SharedPlans]:
    """nnU-Net's plans of the sites' pooled fingerprint, and the same with the small network."""
    described = [SiteDataset.of_folder(f) for f in folders.values()]
    per_case = samples_per_case(sum(d.cases for d in described), config.foreground_samples)
    fingerprints = [site_fingerprint_of(f, per_case, BINS) for f in folders.values()]
    name = dataset_name(DATASET_ID, "StsPet")
    dataset = federation_dataset_json(described, name)
    planned = plan(pool(fingerprints).nnunet_fingerprint(), dataset, name)
    return planned, planned.with_small_network(config.features, config.patch_size)


@dataclass
class TestScores:
    """The one scoring of the test patients."""

    patients: tuple[str, ...]
    site_of: dict[str, str]
    #: Per method (:data:`METHODS`), per metric, one value per test patient.
    results: dict[str, dict[str, list[float]]]
    #: Each local model's Dice on every test patient (not only its own site's).
    local_everywhere: dict[str, list[float]]
    #: Predicted lesion voxels per method and test patient.
    voxels: dict[str, list[int]]


def score_test(
    test: TestSplit,
    sites: Sequence[SitePatients],
    trained: Mapping[str, Trained],
    patients: Patients,
) -> TestScores:
    """Open the test split (once) and score every kept model and the threshold baseline."""
    opened = test.open()
    site_of = {p: s.name for s in sites for p in s.test}
    results: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in METHODS}
    voxels: dict[str, list[int]] = {m: [] for m in METHODS}
    everywhere: dict[str, list[float]] = {s.name: [] for s in sites}
    for patient in opened:
        volume, case, truth = (
            patients.volume(patient),
            patients.case(patient),
            patients.truth(patient),
        )
        local = {s.name: trained[local_name(s.name)].model().mask(volume) for s in sites}
        masks = {
            FEDERATED: trained[FEDERATED].model().mask(volume),
            CENTRALISED: trained[CENTRALISED].model().mask(volume),
            LOCAL: local[site_of[patient]],
            THRESHOLD: threshold_mask(case.image),
        }
        for method, mask in masks.items():
            voxels[method].append(int(mask.sum()))
            for key, value in score(case.image, case.affine, mask, truth).items():
                results[method][key].append(value)
        for name, mask in local.items():
            everywhere[name].append(dice(mask, truth))
    return TestScores(opened, site_of, results, everywhere, voxels)


def local_name(site: str) -> str:
    """The method name of ``site``'s local model."""
    return f"{LOCAL} {site}"


@dataclass
class Outcome:
    """Everything the report states."""

    config: NnunetPetConfig
    sites: list[SitePatients]
    planned: SharedPlans
    shared: SharedPlans
    #: Cases in each built training folder (site name → count).
    site_cases: dict[str, int]
    trained: dict[str, Trained]
    test: TestScores
    looks: int
    seconds: dict[str, float]


def run(data: Path, config: NnunetPetConfig, work: Path) -> Outcome:
    """Build, plan, train every method, choose rounds on validation, then score the test once."""
    started = time.perf_counter()
    patients = Patients(data)
    sites = site_patients(list(patients.sources), config)
    test = TestSplit([p for s in sites for p in s.test])
    folders = build_folders({s.name: s.train for s in sites}, patients, work / "sites", 711)
    everyone = [p for s in sites for p in s.train]
    pooled = build_folders({"pooled": everyone}, patients, work / "sites", 711 + len(sites))
    planned, shared = federation_plans(folders, config)
    seconds = {"site folders, fingerprints and plans": time.perf_counter() - started}
    context = (shared, patients, config)
    validation = [p for s in sites for p in s.validation]
    trained = {
        FEDERATED: train_method(
            FEDERATED, folders, config.iterations, validation, context, work / "federated"
        ),
        CENTRALISED: train_method(
            CENTRALISED,
            pooled,
            config.iterations * len(sites),
            validation,
            context,
            work / "centralised",
        ),
    }
    for site in sites:
        name = local_name(site.name)
        trained[name] = train_method(
            name,
            {site.name: folders[site.name]},
            config.iterations,
            site.validation,
            context,
            work / f"local-{site.name}",
        )
    seconds |= {f"{name} (training and validation)": t.seconds for name, t in trained.items()}
    scoring = time.perf_counter()
    scores = score_test(test, sites, trained, patients)
    seconds["test scoring"] = time.perf_counter() - scoring
    cases = {name: SiteDataset.of_folder(f).cases for name, f in {**folders, **pooled}.items()}
    return Outcome(config, sites, planned, shared, cases, trained, scores, test.looks, seconds)


def main(out_dir: Path, smoke: bool, command: str, data: Path) -> Path:
    """Run and write ``pet-nnunet.md`` and ``pet-nnunet.png`` (work files in a temporary folder)."""
    from federation.experiments import pet_nnunet_report

    config = SMOKE if smoke else NnunetPetConfig()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedseg-pet-nnunet-") as work:
        outcome = run(data, config, Path(work))
    seconds = time.perf_counter() - started
    return pet_nnunet_report.write(outcome, out_dir, RunInfo(command, seconds, smoke))
