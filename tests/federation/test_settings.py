"""Run settings and site declarations parsed from Flower configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import FederationError
from federation.settings import PromoteChoice, RunSettings
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
    ],
)
def test_bad_run_config(config: dict[str, object], message: str) -> None:
    with pytest.raises(FederationError, match=message):
        RunSettings.from_run_config(config)


def test_site_declaration() -> None:
    spec = SiteSpec.from_node_config({"site": "a", "tasks": "liver, spleen", "cases": 1})
    assert spec.tasks == ("liver", "spleen")
    cases = load_site_cases(spec)
    assert len(cases) == 1 and cases[0].target("liver").any()
    with pytest.raises(FederationError, match="unknown tasks"):
        SiteSpec.from_node_config({"site": "a", "tasks": "brain"})
    with pytest.raises(FederationError, match="site="):
        SiteSpec.from_node_config({"tasks": "liver"})


def test_data_folder_without_cases_is_refused(tmp_path: Path) -> None:
    spec = SiteSpec("a", ("liver",), data=str(tmp_path))
    with pytest.raises(FederationError, match="no training cases"):
        load_site_cases(spec)
