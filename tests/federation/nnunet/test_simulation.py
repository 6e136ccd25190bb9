"""Two federated nnU-Net rounds end in a bundle that ``fedseg segment`` uses.

Two sites (``dataset build --format nnunet`` folders) train nnU-Net's own trainer from the
global weights for two rounds; the server aggregates selectively through the round step. The
federation's labels include kidney_left, which no site contours: its output channels must be
the initial ones after both rounds. The final model is written as nnU-Net's model folder,
imported by ``import_model``, promoted into a model store and run by ``fedseg segment``.

With a site that contours only the liver, both sites train nnUNetTrainerMarginal (the default
partial-label mode): the spleen and kidney of that site are merged with its background.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from federation.nnunet.aggregation import is_output
from federation.nnunet.simulation import run_rounds
from federation.promotion import promote
from federation.round_step import RoundRules
from service.cli.main import main
from service.inference.store import ModelStore
from service.nifti import read_nifti, write_nifti
from tests.federation.nnunet.sites import SCANNERS, export_case
from training.nnunet.federated_model import write_model_folder
from training.nnunet.federated_plans import SharedPlans
from training.nnunet.importer import ImportOptions, import_model
from training.nnunet.local_round import PreparedSite, RoundSettings, local_round

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


def _without(folder: Path, label: str, out: Path) -> Path:
    """A copy of a site folder whose cases do not contour ``label`` (it becomes background)."""
    shutil.copytree(folder, out)
    dataset = json.loads((out / "dataset.json").read_text())
    value = dataset["labels"].pop(label)
    assert value == max(dataset["labels"].values()) + 1  # the others keep their numbers
    for case in dataset["fedseg"]["cases"].values():
        case["contoured"].remove(label)
    (out / "dataset.json").write_text(json.dumps(dataset))
    for path in (out / "labelsTr").iterdir():
        values, affine = read_nifti(path)
        write_nifti(path, np.where(values == value, 0, values).astype(np.uint8), affine)
    return out


def test_a_site_without_the_spleen_trains_with_the_marginal_loss(
    sites: dict[str, Path], tiny_plans: SharedPlans, tmp_path: Path
) -> None:
    partial = {
        "site-a": _without(sites["site-a"], "spleen", tmp_path / "site-a-liver"),
        "site-b": sites["site-b"],
    }
    dataset = json.loads(json.dumps(tiny_plans.dataset))
    dataset["labels"] = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "ignore": 4}
    shared = SharedPlans(tiny_plans.plans, dataset, tiny_plans.fingerprint)
    assert SETTINGS.trainer == "nnUNetTrainerMarginal"
    run = run_rounds(partial, shared, SETTINGS, RoundRules(min_sites=2), tmp_path / "work")

    assert [r.aggregated for r in run.rounds] == [True, True]
    assert all(r.accepted == ("site-a", "site-b") for r in run.rounds)
    assert all(np.isfinite(loss) for r in run.rounds for loss in r.losses.values())
    site_a = PreparedSite(tmp_path / "work" / "site-a", shared, 2, frozenset({"liver"}))
    listed = json.loads(site_a.dataset_path.read_text())["fedseg"]["missing_labels"]
    assert list(listed.values()) == [["kidney_left", "spleen"]] * 2
    # site a's spleen and kidney channels train (merged with its background) ...
    update = local_round(site_a, run.initial, SETTINGS, server_round=1)
    trained = ("decoder.seg_layers.1.weight", "decoder.seg_layers.2.weight")
    for key in trained:
        for channel in (2, 3):
            assert not np.array_equal(update.arrays[key][channel], run.initial[key][channel])
    # ... but selective aggregation keeps the channels of kidney_left, which no site contours
    for key in (k for k in run.arrays if is_output(k)):
        np.testing.assert_array_equal(run.arrays[key][3], run.initial[key][3])
    for key in trained:  # liver (both sites) and spleen (site b) are trained
        for channel in (1, 2):
            assert not np.array_equal(run.arrays[key][channel], run.initial[key][channel])

    folder = write_model_folder(
        shared, run.arrays, tmp_path / "results", run.mirror_axes, SETTINGS.rounds, SETTINGS.trainer
    )
    assert folder.name == "nnUNetTrainerMarginal__nnUNetPlans__3d_fullres"
    bundle = import_model([folder], tmp_path / "bundle", ImportOptions(name="fed-marginal"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["nnunet"]["models"][0]["trainer"] == "nnUNetTrainerMarginal"
