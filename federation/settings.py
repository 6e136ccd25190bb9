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
from training.nnunet import trainer_defaults


class ModelKind(StrEnum):
    """What the sites train (run config ``model``)."""

    #: fedseg's small multi-task U-Net: one binary head per organ (``filters``, ``spacing-mm``).
    UNET = "unet"
    #: nnU-Net v2: planned by nnU-Net's planner from the pooled fingerprint of every site's
    #: ``dataset build --format nnunet`` folder, trained by nnU-Net's own trainer.
    NNUNET = "nnunet"


class PromoteChoice(StrEnum):
    """Which round's model the promotion gate considers at the end of a run."""

    BEST = "best"  # highest mean federated Dice over the tasks
    FINAL = "final"  # the last round's model


def _kebab(name: str) -> str:
    return name.replace("_", "-")


#: ``local-steps`` and ``learning-rate`` of each model when the run config leaves them out or
#: empty (the app's pyproject does): the U-Net's Adam steps, and nnU-Net's trainer's epoch
#: (iterations per round) and initial learning rate.
MODEL_DEFAULTS: dict[ModelKind, tuple[int, float]] = {
    ModelKind.UNET: (4, 3e-3),
    ModelKind.NNUNET: (trainer_defaults.ITERATIONS_PER_EPOCH, trainer_defaults.INITIAL_LR),
}


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
    model: ModelKind = ModelKind.UNET
    num_rounds: int = 2
    min_sites: int = 2
    round_timeout_s: float = Field(300.0, alias="round-timeout")
    connect_timeout_s: float = Field(120.0, alias="connect-timeout")
    #: Local training per round; left out or "": the model's default (:data:`MODEL_DEFAULTS`).
    local_steps: int = MODEL_DEFAULTS[ModelKind.UNET][0]
    learning_rate: float = MODEL_DEFAULTS[ModelKind.UNET][1]
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
    #: nnU-Net mode: nnU-Net's experiment planner and trainer classes. The default trainer is
    #: nnU-Net's with the partial-label (marginal) loss; with nnU-Net's own ``nnUNetTrainer``
    #: the sites mark a case's uncontoured labels with nnU-Net's ignore label instead.
    nnunet_planner: str = "ExperimentPlanner"
    nnunet_trainer: str = "nnUNetTrainerMarginal"
    #: nnU-Net mode: replace the planned 3d_fullres network by a small one (features per stage,
    #: each stage after the first halving every axis) and patch size, e.g. for a CPU-only pilot;
    #: both empty keep the planner's network.
    nnunet_features: tuple[int, ...] = ()
    nnunet_patch: tuple[int, ...] = ()
    #: nnU-Net mode: the federation's dataset id (``DatasetNNN_...``; 1..999).
    nnunet_dataset_id: int = 500
    #: nnU-Net mode: foreground intensity samples over the pooled dataset (nnU-Net's 10^8) and
    #: the width of the sites' intensity histogram bins (percentiles are within half of it).
    fingerprint_samples: int = 100_000_000
    fingerprint_bin: float = 0.1
    #: nnU-Net mode: how long sites may take for their fingerprint and for preprocessing.
    prepare_timeout_s: float = Field(3600.0, alias="prepare-timeout")
    #: nnU-Net mode: the promoted bundle's name (its model-store task); empty: fedseg-nnunet-<task>.
    bundle_name: str = ""
    #: Central DP noise multiplier; 0 disables clipping and noise.
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5

    @field_validator("filters", "nnunet_features", "nnunet_patch", mode="before")
    @classmethod
    def _split_numbers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data: object) -> object:
        """Fill ``local-steps`` and ``learning-rate`` left out or empty with the model's."""
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        try:
            kind = ModelKind(out.get("model", ModelKind.UNET))
        except ValueError:
            kind = ModelKind.UNET  # the field's own validation names the unknown model
        for key, default in zip(
            ("local-steps", "learning-rate"), MODEL_DEFAULTS[kind], strict=True
        ):
            name = key.replace("-", "_")
            if out.get(key, out.get(name, "")) == "":
                out.pop(name, None)
                out[key] = default
        return out

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
        if self.local_steps < 1 or self.learning_rate <= 0:
            raise ValueError(
                f"local-steps must be at least 1 and learning-rate positive (got "
                f"{self.local_steps} and {self.learning_rate}); leave them empty for the "
                f"{self.model} defaults"
            )
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
        self._check_nnunet()
        return self

    def _check_nnunet(self) -> None:
        features, patch = self.nnunet_features, self.nnunet_patch
        if bool(features) != bool(patch):
            raise ValueError("nnunet-features and nnunet-patch are given together or not at all")
        if features:
            if min(features) < 1 or len(patch) != 3 or min(patch) < 1:
                raise ValueError(
                    f"nnunet-features {features} must be positive and nnunet-patch {patch} "
                    "three positive sizes"
                )
            divisor = 2 ** (len(features) - 1)
            if any(size % divisor for size in patch):
                raise ValueError(
                    f"nnunet-patch {patch} must be divisible by {divisor} along every axis: "
                    f"{len(features)} stages halve it {len(features) - 1} times"
                )
        if self.model is ModelKind.NNUNET and self.proximal_mu:
            raise ValueError("proximal-mu (FedProx) applies to the U-Net only; set it to 0")
        if not 1 <= self.nnunet_dataset_id <= 999:
            raise ValueError(f"nnunet-dataset-id must lie in 1..999, got {self.nnunet_dataset_id}")
        if self.fingerprint_samples < 1 or self.fingerprint_bin <= 0:
            raise ValueError("fingerprint-samples and fingerprint-bin must be positive")
        if self.prepare_timeout_s <= 0:
            raise ValueError("prepare-timeout must be positive")

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
