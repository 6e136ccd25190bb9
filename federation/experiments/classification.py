"""``classification``: lesion malignancy from MR phantoms, FL vs centralised (AUC, DeLong).

Each site's MR phantoms hold one liver tumour, malignant (lobulated, textured) or benign
(smooth). A 16-voxel cube around the tumour on a 4 mm grid (z-scored) is classified by the
lesion head of the multi-task network (shared encoder + ``lesion-class`` head). *Centralised*
trains on the pooled training tumours; *FL* runs FedAvg over the sites with the same total
number of steps. Both score the held-out tumours of every site; AUCs are compared with
DeLong's test for paired ROC curves.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from federation.experiments.report import RunInfo, table, write_report
from federation.local import get_arrays, set_arrays
from federation.strategies import aggregate_updates, check_updates
from federation.updates import SiteUpdate
from training.data.preprocess import prepare
from training.metrics.classification import roc_auc
from training.models import ModelConfig, MultiTaskUNet, build_model
from training.phantoms import make_case
from training.phantoms.config import PhantomConfig, PhantomModality, Size
from training.stats.delong import delong_test
from training.tasks import TaskName, get_task

CLASS_TASK = "lesion-class"
CUBE = 16


@dataclass(frozen=True)
class ClassificationConfig:
    """Size of the experiment."""

    sites: int = 3
    cases_per_site: int = 12
    test_cases_per_site: int = 6
    rounds: int = 8
    local_steps: int = 8
    batch: int = 4
    filters: tuple[int, ...] = (8, 16)
    learning_rate: float = 3e-3
    seed: int = 0


SMOKE = ClassificationConfig(
    sites=2,
    cases_per_site=3,
    test_cases_per_site=3,
    rounds=2,
    local_steps=1,
    batch=2,
    filters=(4, 8),
)


@dataclass(frozen=True)
class Lesions:
    """Tumour cubes ``(n, 1, CUBE, CUBE, CUBE)`` and labels (1 malignant)."""

    cubes: np.ndarray
    labels: np.ndarray


def _cube(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    centre = np.rint(np.argwhere(mask).mean(0)).astype(int)
    padded = np.pad(image, CUBE, mode="constant", constant_values=float(image.min()))
    start = centre + CUBE - CUBE // 2
    return padded[tuple(slice(s, s + CUBE) for s in start)]


def lesions(config: ClassificationConfig, site: int, numbers: Sequence[int]) -> Lesions:
    """Tumour cubes of phantom MR cases of ``site``."""
    phantoms = PhantomConfig(
        sites=config.sites, seed=config.seed, size=Size.SMALL, modalities=(PhantomModality.MR,)
    )
    task = dataclasses.replace(get_task(TaskName.MR_TUMOUR), spacing=(4.0, 4.0, 4.0))
    cubes, labels = [], []
    for number in numbers:
        mr = make_case(phantoms, site, number).mr
        assert mr is not None
        prepared = prepare(mr.signal, mr.grid.affine, mr.tumour_mask, task)
        assert prepared.labels is not None
        cubes.append(_cube(prepared.image, prepared.labels > 0))
        labels.append(int(mr.tumour.kind == "malignant"))
    return Lesions(np.stack(cubes)[:, None].astype(np.float32), np.asarray(labels))


def train_classifier(
    model: MultiTaskUNet, data: Lesions, steps: int, config: ClassificationConfig, seed: int
) -> None:
    """Cross-entropy training of the encoder and the lesion head on random mini-batches."""
    rng = np.random.default_rng(seed)
    params = list(model.encoder.parameters()) + list(model.classifier.parameters())  # type: ignore[union-attr]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    model.train()
    for _ in range(steps):
        pick = rng.integers(len(data.labels), size=config.batch)
        logits = model.classify(torch.from_numpy(data.cubes[pick]))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(data.labels[pick]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def malignancy(model: MultiTaskUNet, data: Lesions) -> np.ndarray:
    """Probability of the malignant class for every cube."""
    model.eval()
    return torch.softmax(model.classify(torch.from_numpy(data.cubes)), dim=1)[:, 1].numpy()


def _federated(
    sites: Sequence[Lesions], config: ClassificationConfig, cfg: ModelConfig
) -> MultiTaskUNet:
    model = build_model(cfg, config.seed)
    arrays = get_arrays(model)
    for server_round in range(1, config.rounds + 1):
        updates = []
        for index, data in enumerate(sites):
            set_arrays(model, arrays)
            train_classifier(model, data, config.local_steps, config, 1000 * server_round + index)
            task = frozenset({CLASS_TASK})
            updates.append(
                SiteUpdate(f"site-{index + 1}", get_arrays(model), len(data.labels), task)
            )
        accepted, _ = check_updates(updates, arrays)
        arrays = aggregate_updates(arrays, accepted)
    set_arrays(model, arrays)
    return model


def run(config: ClassificationConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Test labels and each method's malignancy scores."""
    n, t = config.cases_per_site, config.test_cases_per_site
    train = [lesions(config, s, range(1, n + 1)) for s in range(1, config.sites + 1)]
    test = [lesions(config, s, range(n + 1, n + t + 1)) for s in range(1, config.sites + 1)]
    pooled = Lesions(
        np.concatenate([d.cubes for d in train]), np.concatenate([d.labels for d in train])
    )
    cfg = ModelConfig(heads={"tumour": 2}, filters=config.filters, classifier_classes=2)
    central = build_model(cfg, config.seed)
    train_classifier(
        central, pooled, config.rounds * config.local_steps * config.sites, config, config.seed
    )
    federated = _federated(train, config, cfg)
    held_out = Lesions(
        np.concatenate([d.cubes for d in test]), np.concatenate([d.labels for d in test])
    )
    return held_out.labels, {
        "centralised": malignancy(central, held_out),
        "FL": malignancy(federated, held_out),
    }


def main(out_dir: Path, smoke: bool, command: str) -> Path:
    """Run and write ``classification.md`` and ``classification.png``."""
    config = SMOKE if smoke else ClassificationConfig()
    started = time.perf_counter()
    labels, scores = run(config)
    seconds = time.perf_counter() - started
    if labels.min() == labels.max():
        rows = [[m, "undefined (one class only)"] for m in scores]
        p_text = "DeLong test undefined: the test set holds one class only."
    else:
        result = delong_test(labels, scores["centralised"], scores["FL"])
        rows = [[m, f"{roc_auc(labels, s):.3f}"] for m, s in scores.items()]
        p_text = f"DeLong p (centralised vs FL): **{result.p_value:.3f}** (z = {result.z:.2f})."
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot(labels, scores, out_dir / "classification.png")
    sections = [
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        f"Settings: {config.sites} sites x {config.cases_per_site} training tumours, "
        f"{config.test_cases_per_site} held-out tumours per site ({int(labels.sum())} malignant "
        f"of {labels.size}), {config.rounds} rounds x {config.local_steps} local steps of batch "
        f"{config.batch} (centralised: {config.rounds * config.local_steps * config.sites} "
        f"steps), filters {config.filters}.",
        table(["method", "AUC"], rows),
        p_text,
        "![ROC curves](classification.png)",
    ]
    return write_report(
        out_dir / "classification.md",
        "Lesion malignancy: FL vs centralised",
        RunInfo(command, seconds, smoke),
        sections,
    )


def _plot(labels: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for method, score in scores.items():
        order = np.argsort(-score)
        positives = max(int(labels.sum()), 1)
        negatives = max(int((1 - labels).sum()), 1)
        tpr = np.concatenate([[0.0], np.cumsum(labels[order]) / positives])
        fpr = np.concatenate([[0.0], np.cumsum(1 - labels[order]) / negatives])
        ax.plot(fpr, tpr, label=method)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
