"""Every key of fedseg's Flower messages and of the metrics they carry, in one place.

Plain strings only (no Flower import), so the registry and the CLI can read metric names
without loading Flower. The keys of the round config are the fields of
:class:`federation.records.RoundConfig`, in kebab case.
"""

from __future__ import annotations

#: Names of the records inside a message's RecordDict.
ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
CONFIG_KEY = "config"
SITE_KEY = "site"
#: The server's query for declarations: ``{QUERY_KEY: SITE_KEY}`` in the config record.
QUERY_KEY = "query"
#: What the sites train (:class:`federation.settings.ModelKind`), in the query's config record.
MODEL_KEY = "model"

# nnU-Net mode: the messages before round 1 (message type ``<category>.<action>``).
#: A site's description of its nnU-Net dataset (JSON text), in its reply to the query.
DATASET_KEY = "dataset"
#: Action of the server's request for a site's fingerprint summary (``query.fingerprint``).
FINGERPRINT_ACTION = "fingerprint"
#: Pooled case count, intensity sample count and histogram bins of the request (bins as JSON).
POOLED_CASES_KEY = "pooled-cases"
SAMPLES_KEY = "samples"
BINS_KEY = "bins"
#: A site's fingerprint summary (JSON text: histograms and sums, no per-case value).
FINGERPRINT_KEY = "fingerprint"
#: Action of the message carrying the shared plans (``train.plans``): the site preprocesses.
PLANS_ACTION = "plans"
#: The shared plans (:meth:`training.nnunet.federated_plans.SharedPlans.as_json` text).
PLANS_KEY = "plans"
#: nnU-Net's trainer class, in the round config's architecture (beside MODEL_KEY and PLANS_KEY).
TRAINER_KEY = "trainer"
#: SHA-256 of the plans text as the site received it (echoed back), and its case split.
PLANS_SHA256_KEY = "plans-sha256"
TRAINING_CASES_KEY = "training-cases"
VALIDATION_CASES_KEY = "validation-cases"
#: Metric names of the sites' replies (per-task metrics use :func:`dice_key`).
NUM_EXAMPLES_KEY = "num-examples"
TRAIN_LOSS_KEY = "train-loss"


_DICE = "dice/"
_COUNT = "n/"


def dice_key(task: str) -> str:
    """Metric name of a task's mean Dice (also the bundle's validation metric name)."""
    return f"{_DICE}{task}"


def count_key(task: str) -> str:
    """Metric name of the number of cases behind a task's Dice."""
    return f"{_COUNT}{task}"


def task_of_dice_key(key: str) -> str | None:
    """The task of a :func:`dice_key` metric name; None for other metrics."""
    return key.removeprefix(_DICE) if key.startswith(_DICE) else None
