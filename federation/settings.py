"""Run settings of a federated run, parsed once from the Flower run config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from federation.errors import FederationError
from federation.privacy import PrivacySettings
from federation.strategies import Aggregator


class PromoteChoice(StrEnum):
    """Which round's model the promotion gate considers at the end of a run."""

    BEST = "best"  # highest mean federated Dice over the tasks
    FINAL = "final"  # the last round's model


@dataclass(frozen=True)
class RunSettings:
    """Everything the ServerApp reads from ``[tool.flwr.app.config]`` (or ``--run-config``)."""

    state_dir: Path
    num_rounds: int = 2
    min_sites: int = 2
    round_timeout_s: float = 300.0
    connect_timeout_s: float = 120.0
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

    def __post_init__(self) -> None:
        if not self.state_dir.is_absolute():
            raise FederationError(
                f"state-dir must be an absolute path (got {self.state_dir}); the ServerApp "
                "runs in its own working directory"
            )
        if self.num_rounds < 1 or self.min_sites < 1:
            raise FederationError("num-rounds and min-sites must be at least 1")
        if self.round_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise FederationError("timeouts must be positive")
        folders = {"promote-to": self.promote_to, "shipped-models": self.shipped_models}
        for key, value in folders.items():
            if value and not Path(value).is_absolute():
                raise FederationError(f"{key} must be an absolute path (got {value})")
        if self.spacing_mm <= 0:
            raise FederationError("spacing-mm must be positive")
        if self.dp_noise < 0 or self.dp_clip <= 0 or not 0 < self.dp_delta < 1:
            raise FederationError("dp-noise must be >= 0, dp-clip > 0 and dp-delta in (0, 1)")

    @property
    def privacy(self) -> PrivacySettings | None:
        """Central DP settings, or None when ``dp-noise`` is 0."""
        if not self.dp_noise:
            return None
        return PrivacySettings(self.dp_clip, self.dp_noise, self.dp_delta)

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> RunSettings:
        """Parse the run config (kebab-case keys as in the app's pyproject)."""

        def get(key: str, default: object) -> object:
            return config.get(key, default)

        state_dir = str(get("state-dir", ""))
        if not state_dir:
            raise FederationError('run config needs state-dir="/absolute/path"')
        try:
            return cls(
                state_dir=Path(state_dir),
                num_rounds=int(get("num-rounds", 2)),  # type: ignore[call-overload]
                min_sites=int(get("min-sites", 2)),  # type: ignore[call-overload]
                round_timeout_s=float(get("round-timeout", 300.0)),  # type: ignore[arg-type]
                connect_timeout_s=float(get("connect-timeout", 120.0)),  # type: ignore[arg-type]
                local_steps=int(get("local-steps", 4)),  # type: ignore[call-overload]
                learning_rate=float(get("learning-rate", 3e-3)),  # type: ignore[arg-type]
                proximal_mu=float(get("proximal-mu", 0.0)),  # type: ignore[arg-type]
                aggregator=Aggregator(str(get("aggregator", "mean"))),
                selective=bool(get("selective", True)),
                trim_fraction=float(get("trim-fraction", 0.2)),  # type: ignore[arg-type]
                norm_ratio=float(get("norm-ratio", 10.0)),  # type: ignore[arg-type]
                filters=tuple(int(f) for f in str(get("filters", "8,16")).split(",")),
                seed=int(get("seed", 0)),  # type: ignore[call-overload]
                promote_to=str(get("promote-to", "")),
                promote_model=PromoteChoice(str(get("promote-model", "best"))),
                shipped_models=str(get("shipped-models", "")),
                spacing_mm=float(get("spacing-mm", 12.0)),  # type: ignore[arg-type]
                dp_noise=float(get("dp-noise", 0.0)),  # type: ignore[arg-type]
                dp_clip=float(get("dp-clip", 1.0)),  # type: ignore[arg-type]
                dp_delta=float(get("dp-delta", 1e-5)),  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise FederationError(f"invalid run config: {exc}") from exc
