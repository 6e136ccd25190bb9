"""Run settings and site declarations parsed from Flower configs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from federation.errors import FederationError
from federation.settings import ModelKind, PromoteChoice, RunSettings
from federation.sites import SiteSpec, load_site_cases
from federation.strategies import Aggregator


def test_run_config_is_parsed_once_into_settings() -> None:
    settings = RunSettings.from_run_config(
        {"state-dir": "/srv/fl", "num-rounds": 5, "aggregator": "median", "filters": "4,8,16"}
    )
    assert settings.state_dir == Path("/srv/fl") and settings.num_rounds == 5
    assert settings.aggregator is Aggregator.MEDIAN and settings.filters == (4, 8, 16)
    assert settings.privacy is None
    private = RunSettings.from_run_config({"state-dir": "/x", "dp-noise": 1.1, "dp-clip": 0.5})
    assert private.privacy is not None and private.privacy.noise_multiplier == 1.1
    assert private.privacy.clip == 0.5 and private.privacy.delta == 1e-5
    promoting = RunSettings.from_run_config(
        {"state-dir": "/x", "promote-to": "/srv/models", "promote-model": "final"}
    )
    assert promoting.promote_model is PromoteChoice.FINAL and promoting.spacing_mm == 12.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "state-dir"),
        ({"state-dir": "relative"}, "absolute"),
        ({"state-dir": "/x", "aggregator": "mode"}, "invalid run config"),
        ({"state-dir": "/x", "min-sites": 0}, "at least 1"),
        ({"state-dir": "/x", "dp-noise": 1.0, "dp-clip": 0}, "dp-clip"),
        ({"state-dir": "/x", "promote-to": "models"}, "promote-to must be an absolute"),
        ({"state-dir": "/x", "promote-model": "latest"}, "invalid run config"),
        ({"state-dir": "/x", "spacing-mm": 0}, "spacing-mm"),
        ({"state-dir": "/x", "model": "nnunet3d"}, "model: Input should be 'unet' or 'nnunet'"),
        ({"state-dir": "/x", "nnunet-features": "4,8"}, "together"),
        ({"state-dir": "/x", "nnunet-features": "4,8,8", "nnunet-patch": "8,16,18"}, "by 4"),
        ({"state-dir": "/x", "model": "nnunet", "proximal-mu": 0.1}, "FedProx"),
        ({"state-dir": "/x", "nnunet-dataset-id": 1000}, "1..999"),
        ({"state-dir": "/x", "model": "nnunet", "local-steps": 0}, "local-steps must be at least"),
        ({"state-dir": "/x", "learning-rate": -0.1}, "learning-rate positive"),
    ],
)
def test_bad_run_config(config: dict[str, object], message: str) -> None:
    with pytest.raises(FederationError, match=message):
        RunSettings.from_run_config(config)


def test_nnunet_run_settings() -> None:
    settings = RunSettings.from_run_config(
        {"state-dir": "/x", "model": "nnunet", "nnunet-features": "4,8", "nnunet-patch": "8,8,8"}
    )
    assert settings.model is ModelKind.NNUNET
    assert settings.nnunet_features == (4, 8) and settings.nnunet_patch == (8, 8, 8)
    assert settings.fingerprint_samples == 10**8 and settings.prepare_timeout_s == 3600
    assert RunSettings.from_run_config({"state-dir": "/x"}).model is ModelKind.UNET


def test_every_key_of_the_app_defaults_is_a_setting() -> None:
    app = Path(__file__).resolve().parents[2] / "federation" / "app" / "pyproject.toml"
    defaults = tomllib.loads(app.read_text())["tool"]["flwr"]["app"]["config"]
    settings = RunSettings.from_run_config(defaults)
    assert settings.round_timeout_s == defaults["round-timeout"]
    assert settings.selective is defaults["selective"]
    # the app leaves local training to the model: Flower passes every key, so a value there
    # would look given and nnU-Net runs would train the U-Net's 4 steps
    assert (settings.local_steps, settings.learning_rate) == (4, 3e-3)
    nnunet = RunSettings.from_run_config({**defaults, "model": "nnunet"})
    assert (nnunet.local_steps, nnunet.learning_rate) == (250, 1e-2)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, (4, 3e-3)),
        ({"model": "nnunet"}, (250, 1e-2)),  # nnUNetTrainer's epoch and initial learning rate
        ({"model": "nnunet", "local-steps": "", "learning-rate": ""}, (250, 1e-2)),
        ({"model": "nnunet", "local-steps": 4, "learning-rate": 0.1}, (4, 0.1)),
        ({"model": "nnunet", "learning-rate": 3e-3}, (250, 3e-3)),
        ({"model": "unet", "local-steps": 250}, (250, 3e-3)),
        ({"model": "unet", "local_steps": 2, "learning_rate": 0.5}, (2, 0.5)),  # field names
    ],
)
def test_local_training_defaults_follow_the_model_and_given_values_win(
    config: dict[str, object], expected: tuple[int, float]
) -> None:
    settings = RunSettings.from_run_config({"state-dir": "/x", **config})
    assert (settings.local_steps, settings.learning_rate) == expected
    assert settings == RunSettings.model_validate({"state-dir": "/x", **config})


def test_nnunet_defaults_are_the_trainer_defaults_module() -> None:
    # tests/federation/nnunet/test_local_round.py checks the module against nnU-Net's trainer
    from training.nnunet.trainer_defaults import INITIAL_LR, ITERATIONS_PER_EPOCH

    settings = RunSettings(state_dir=Path("/x"), model=ModelKind.NNUNET)
    assert (settings.local_steps, settings.learning_rate) == (ITERATIONS_PER_EPOCH, INITIAL_LR)


def test_text_booleans_and_numbers_are_typed_not_truthy() -> None:
    # `--run-config 'selective="false"'` arrives as text; bool("false") would be True.
    settings = RunSettings.from_run_config({"state-dir": "/x", "selective": "false"})
    assert settings.selective is False and settings.rules.selective is False
    assert RunSettings.from_run_config({"state-dir": "/x", "selective": "true"}).selective
    typed = RunSettings.from_run_config({"state-dir": "/x", "min-sites": "3", "dp-noise": "0.5"})
    assert typed.rules.min_sites == 3 and typed.rules.privacy is not None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"selective": "maybe"}, "selective: Input should be a valid boolean"),
        ({"min-sites": 2.5}, "min-sites: Input should be a valid integer"),
        ({"num-round": 3}, "num-round: Extra inputs are not permitted"),
        ({"filters": "8,x"}, "filters"),
    ],
)
def test_run_config_errors_name_the_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(FederationError, match=message):
        RunSettings.from_run_config({"state-dir": "/x", **config})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cases": 1.5}, "cases: Input should be a valid integer"),
        ({"case": 2}, "case: Extra inputs are not permitted"),
        ({"spacing-mm": "fine"}, "spacing-mm"),
    ],
)
def test_node_config_errors_name_the_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(FederationError, match=message):
        SiteSpec.from_node_config({"site": "a", "tasks": "liver", **config})


def test_site_declaration() -> None:
    spec = SiteSpec.from_node_config({"site": "a", "tasks": "liver, spleen", "cases": 1})
    assert spec.tasks == ("liver", "spleen")
    cases = load_site_cases(spec)
    assert len(cases) == 1 and cases[0].target("liver").any()
    with pytest.raises(FederationError, match="unknown tasks"):
        SiteSpec.from_node_config({"site": "a", "tasks": "brain"})
    with pytest.raises(FederationError, match="site="):
        SiteSpec.from_node_config({"tasks": "liver"})


def test_tasks_may_come_from_a_data_folder_only(tmp_path: Path) -> None:
    with pytest.raises(FederationError, match="needs tasks"):
        SiteSpec.from_node_config({"site": "a"})
    spec = SiteSpec.from_node_config({"site": "a", "data": str(tmp_path), "work-dir": "/w"})
    assert spec.tasks == () and spec.validation_fraction == 0.2
    with pytest.raises(FederationError, match="for the U-Net"):
        load_site_cases(spec)
    with pytest.raises(FederationError, match="validation-fraction"):
        SiteSpec.from_node_config({"site": "a", "tasks": "liver", "validation-fraction": 1})


def test_data_folder_without_cases_is_refused(tmp_path: Path) -> None:
    spec = SiteSpec(name="a", tasks=("liver",), data=str(tmp_path))
    with pytest.raises(FederationError, match="no training cases"):
        load_site_cases(spec)
