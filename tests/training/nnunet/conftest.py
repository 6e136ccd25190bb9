"""Reference nnU-Net models, built once per test session by nnU-Net itself on phantoms.

nnU-Net's fingerprint extractor, planner, preprocessor and trainer make four model folders
(``training/nnunet/phantom_models.py``): a CT model with two folds (CTNormalization), an MR
model (z-score), a region model (sigmoid, ``regions_class_order``) and an old-format-plans
``nnUNetTrainerNoMirroring`` model laid out as TotalSegmentator's. Building them takes about a
minute on two cores (two builder processes, one thread each), so they are made once per session
and shared by the importer tests and the parity tests. To iterate locally, build them once
(``python -m training.nnunet.phantom_models --root DIR --model ct --model mr --model regions
--model totalseg``) and point ``FEDSEG_TEST_NNUNET_MODELS`` at ``DIR``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.requirements import missing

REPO = Path(__file__).resolve().parents[3]
#: Builder processes and the models each builds (balanced: two trainings each).
_GROUPS = (("ct",), ("mr", "regions", "totalseg"))


@dataclass(frozen=True)
class ReferenceModels:
    """The built model folders (``TRAINER__PLANS__CONFIGURATION``) and their raw datasets."""

    root: Path
    ct: Path  # folds 0 and 1
    mr: Path
    regions: Path
    totalseg: Path  # the TotalSegmentator-style dataset folder (old plans, NoMirroring)

    def raw(self, key: str) -> Path:
        """The raw dataset folder of a model (``imagesTs``/``labelsTs`` hold unseen cases)."""
        from training.nnunet.phantom_models import SPECS

        return self.root / "raw" / SPECS[key].dataset_name


def _need_nnunet() -> None:
    if importlib.util.find_spec("nnunetv2") is None:
        missing("nnunetv2 is not installed (the train extra)")


@pytest.fixture(scope="session")
def nnunet_models(tmp_path_factory: pytest.TempPathFactory) -> ReferenceModels:
    """Build the reference models (once per session)."""
    _need_nnunet()
    prebuilt = os.environ.get("FEDSEG_TEST_NNUNET_MODELS")
    root = Path(prebuilt) if prebuilt else tmp_path_factory.mktemp("nnunet-models")
    if not prebuilt:
        _build(root)
    return _models(root)


def _build(root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    logs = []
    processes = []
    for number, group in enumerate(_GROUPS):
        log = root / f"build-{number}.log"
        logs.append(log)
        command = [sys.executable, "-m", "training.nnunet.phantom_models", "--root", str(root)]
        for key in group:
            command += ["--model", key]
        with log.open("w") as handle:
            processes.append(
                subprocess.Popen(
                    command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT
                )
            )
    codes = [p.wait(timeout=900) for p in processes]
    for code, log in zip(codes, logs, strict=True):
        if code != 0:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"building the reference nnU-Net models failed ({log}):\n{tail}")


def _models(root: Path) -> ReferenceModels:
    from training.nnunet.phantom_models import SPECS

    results = root / "results"

    def trained(key: str) -> Path:
        spec = SPECS[key]
        return results / spec.dataset_name / f"{spec.trainer}__nnUNetPlans__3d_fullres"

    return ReferenceModels(
        root=root,
        ct=trained("ct"),
        mr=trained("mr"),
        regions=trained("regions"),
        totalseg=results / SPECS["totalseg"].dataset_name,
    )
