"""Run settings of a federated run, parsed once from the Flower run config."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from federation.errors import FederationError, validation_message
from federation.privacy import PrivacySettings
from federation.round_step import RoundRules
from federation.strategies import Aggregator, UpdateCheck


class PromoteChoice(StrEnum):
    """Which round's model the promotion gate considers at the end of a run."""

    BEST = "best"  # highest mean federated Dice over the tasks
    FINAL = "final"  # the last round's model


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class RunSettings(BaseModel):
    """Everything the ServerApp reads from ``[tool.flwr.app.config]`` (or ``--run-config``).

    Typed once, with the keys the config uses (``num-rounds``, ``dp-noise``...): a boolean given
    as text (``selective="false"``) reads as false, a fractional site count is refused, and an
    unknown key (a typo) is an error rather than a silent default.
    """

    model_config = ConfigDict(
        frozen=True, alias_generator=_kebab, validate_by_name=True, extra="forbid"
    )

    state_dir: Path
    num_rounds: int = 2
    min_sites: int = 2
    round_timeout_s: float = Field(300.0, alias="round-timeout")
    connect_timeout_s: float = Field(120.0, alias="connect-timeout")
    local_steps: int = 4
    learning_rate: float = 3e-3
    proximal_mu: float = 0.0
    aggregator: Aggregator = Aggregator.MEAN
    selective: bool = True
    trim_fraction: float = 0.2
    norm_ratio: float = 10.0
    filters: tuple[int, ...] = (8, 16)
    seed: int = 0
    #: Model store folder to promote into; empty disables the promotion gate.
    promote_to: str = ""
    promote_model: PromoteChoice = PromoteChoice.BEST
    #: The service's read-only shipped-models folder (``FEDSEG_SHIPPED_MODELS``), searched after
    #: ``promote_to`` as the service does, so the gate compares with the model the service uses.
    shipped_models: str = ""
    #: Isotropic grid of the sites' training (node config ``spacing-mm``); the bundle's spacing.
    spacing_mm: float = 12.0
    #: Central DP noise multiplier; 0 disables clipping and noise.
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5

    @field_validator("filters", mode="before")
    @classmethod
    def _split_filters(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> RunSettings:
        if not self.state_dir.is_absolute():
            raise ValueError(
                f"state-dir must be an absolute path (got {self.state_dir}); the ServerApp "
                "runs in its own working directory"
            )
        if self.num_rounds < 1 or self.min_sites < 1:
            raise ValueError("num-rounds and min-sites must be at least 1")
        if self.round_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        folders = {"promote-to": self.promote_to, "shipped-models": self.shipped_models}
        for key, value in folders.items():
            if value and not Path(value).is_absolute():
                raise ValueError(f"{key} must be an absolute path (got {value})")
        if self.spacing_mm <= 0:
            raise ValueError("spacing-mm must be positive")
        if self.dp_noise < 0 or self.dp_clip <= 0 or not 0 < self.dp_delta < 1:
            raise ValueError("dp-noise must be >= 0, dp-clip > 0 and dp-delta in (0, 1)")
        if not self.filters or min(self.filters) < 1:
            raise ValueError(f"filters must be positive channel counts, got {self.filters}")
        return self

    @property
    def privacy(self) -> PrivacySettings | None:
        """Central DP settings, or None when ``dp-noise`` is 0."""
        if not self.dp_noise:
            return None
        return PrivacySettings(self.dp_clip, self.dp_noise, self.dp_delta)

    @property
    def rules(self) -> RoundRules:
        """The round step's rules (gate, checks, aggregation, privacy) of this run."""
        return RoundRules(
            min_sites=self.min_sites,
            aggregator=self.aggregator,
            selective=self.selective,
            trim_fraction=self.trim_fraction,
            check=UpdateCheck(norm_ratio=self.norm_ratio),
            privacy=self.privacy,
            seed=self.seed,
        )

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> RunSettings:
        """Parse the run config (kebab-case keys as in the app's pyproject).

        Raises
        ------
        FederationError
            Naming each invalid key and why.
        """
        if not config.get("state-dir"):
            raise FederationError('run config needs state-dir="/absolute/path"')
        try:
            return cls.model_validate(dict(config))
        except ValidationError as exc:
            raise FederationError(f"invalid run config: {validation_message(exc)}") from exc
