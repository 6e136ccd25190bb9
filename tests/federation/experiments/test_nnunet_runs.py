"""The experiments' validated rounds: a round whose import is refused cannot be the kept one."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.experiments import segviz_nnunet
from federation.experiments.nnunet_runs import (
    MethodRun,
    ServedModel,
    ValidatedRun,
    federation_plans,
    network_summary,
    refusal_note,
    train_validated,
    validation_cells,
)
from federation.experiments.segviz_nnunet import SMOKE
from federation.nnunet.simulation import FederatedRun
from federation.round_step import RoundRules
from service.errors import ModelBundleError
from training.nnunet.federated_plans import SharedPlans
from training.nnunet.importer import ImportOptions
from training.nnunet.local_round import RoundSettings


def test_a_refused_round_is_recorded_and_never_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prepared = segviz_nnunet.prepare(SMOKE, tmp_path / "prepared")
        folders = {"site-01": prepared.folders["site-01"]}
        _, shared = federation_plans(folders, "Dataset799_Refusal", SMOKE.network, 1e4)
        real = ServedModel.of

        def refuse_round_one(
            shared: SharedPlans,
            run: FederatedRun,
            folder: Path,
            options: ImportOptions,
            trainer: str,
        ) -> ServedModel:
            if len(run.rounds) == 1:
                raise ModelBundleError(f"{folder}: the ONNX export differs from torch")
            return real(shared, run, folder, options, trainer)

        monkeypatch.setattr(ServedModel, "of", refuse_round_one)
        settings = RoundSettings(epochs=1, iterations_per_epoch=2, rounds=2, seed=1)
        spec = MethodRun(
            "refusal",
            folders,
            shared,
            settings,
            RoundRules(min_sites=1),
            ImportOptions(name="refusal"),
            validate_every=1,
        )
        scored: list[ServedModel] = []

        def validate(model: ServedModel) -> float:
            scored.append(model)
            return 0.5

        run = train_validated(spec, validate, tmp_path / "work")
    finally:
        torch.set_num_threads(threads)
    assert list(run.refused) == [1] and "differs from torch" in run.refused[1]
    assert run.by_round == {2: 0.5} and run.chosen == 2
    assert scored == [run.model()] and run.model().numbers == {"liver": 1}
    assert validation_cells(run, [1, 2]) == ["refused", "0.500"]
    assert "1 in all" in refusal_note([run])
    assert network_summary(shared)["features"] == "-".join(map(str, SMOKE.network.features))


def test_a_run_with_every_round_refused_has_no_model() -> None:
    run = ValidatedRun("refusal", refused={2: "parity"})
    assert refusal_note([ValidatedRun("fine")]) == ""
    with pytest.raises(RuntimeError, match=r"no servable validated round.*round 2: parity"):
        run.model()
