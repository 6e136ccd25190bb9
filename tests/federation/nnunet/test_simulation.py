"""Two federated nnU-Net rounds end in a bundle that ``fedseg segment`` uses.

Two sites (``dataset build --format nnunet`` folders) train nnU-Net's own trainer from the
global weights for two rounds; the server aggregates selectively through the round step. The
federation's labels include kidney_left, which no site contours: its output channels must be
the initial ones after both rounds. The final model is written as nnU-Net's model folder,
imported by ``import_model``, promoted into a model store and run by ``fedseg segment``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from federation.nnunet.aggregation import is_output
from federation.nnunet.simulation import run_rounds
from federation.promotion import promote
from federation.round_step import RoundRules
from service.cli.main import main
from service.inference.store import ModelStore
from tests.federation.nnunet.sites import SCANNERS, export_case
from training.nnunet.federated_model import write_model_folder
from training.nnunet.federated_plans import SharedPlans
from training.nnunet.importer import ImportOptions, import_model
from training.nnunet.local_round import RoundSettings

SETTINGS = RoundSettings(epochs=1, iterations_per_epoch=3, rounds=2, initial_lr=0.01, seed=5)


def test_two_rounds_end_in_a_bundle_that_segment_uses(
    sites: dict[str, Path], tiny_plans: SharedPlans, tmp_path: Path
) -> None:
    dataset = json.loads(json.dumps(tiny_plans.dataset))
    dataset["labels"] = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "ignore": 4}
    shared = SharedPlans(tiny_plans.plans, dataset, tiny_plans.fingerprint)
    run = run_rounds(sites, shared, SETTINGS, RoundRules(min_sites=2), tmp_path / "work")

    assert [r.aggregated for r in run.rounds] == [True, True]
    assert all(r.accepted == ("site-a", "site-b") for r in run.rounds)
    assert all(np.isfinite(loss) for r in run.rounds for loss in r.losses.values())
    outputs = [k for k in run.arrays if is_output(k)]
    trained = "decoder.seg_layers.2.weight"
    for key in outputs:
        np.testing.assert_array_equal(run.arrays[key][3], run.initial[key][3])  # kidney_left
    assert not np.array_equal(run.arrays[trained][1], run.initial[trained][1])  # liver trained
    body = "encoder.stages.0.0.convs.0.conv.weight"
    assert not np.array_equal(run.arrays[body], run.initial[body])

    folder = write_model_folder(
        shared, run.arrays, tmp_path / "results", run.mirror_axes, SETTINGS.rounds
    )
    bundle = import_model([folder], tmp_path / "bundle", ImportOptions(name="fed-nnunet"))
    store = ModelStore(roots=(tmp_path / "store",))
    decision = promote(bundle, {}, store)
    assert decision.promote
    installed = store.for_task(decision.task)
    assert installed is not None and installed.manifest.name == "fed-nnunet"

    _, spacing, shape, hu = SCANNERS["site-a"]
    export_case(tmp_path / "study", 9, spacing, shape, hu)
    out = tmp_path / "out"
    code = main(
        [
            "segment",
            str(tmp_path / "study" / "ct"),
            "--out",
            str(out),
            "--model",
            str(installed.path),
            "--device",
            "cpu",
            "--qc-policy",
            "flag",
            "--force",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    (series,) = summary["series"]
    assert series["error"] is None
    assert (out / "sr.dcm").is_file()
