"""One typed settings object for fedseg.

Precedence, highest first: explicit arguments (the CLI passes them), environment variables with
the ``FEDSEG_`` prefix, a TOML/JSON-free ``.env``-style file named by ``FEDSEG_ENV_FILE``, then the
defaults below. Library code receives a :class:`Settings` (or the one value it needs); it never
reads ``os.environ`` itself.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository layout puts the shared data beside the checkout: <repo>/../shared/data.
_REPO_ROOT = Path(__file__).resolve().parent.parent


class GeometryPolicy(StrEnum):
    """What the volume reader does with a stack that is not a regular grid."""

    #: Resample gantry-tilted and unevenly spaced stacks onto a regular grid, with a warning.
    RESAMPLE = "resample"
    #: Refuse any irregular stack with a :class:`~service.errors.DicomGeometryError`.
    STRICT = "strict"


class Settings(BaseSettings):
    """Settings shared by every fedseg entry point."""

    model_config = SettingsConfigDict(
        env_prefix="FEDSEG_",
        env_file=os.environ.get("FEDSEG_ENV_FILE"),
        extra="ignore",
    )

    data: Path = Field(
        default=_REPO_ROOT.parent / "shared" / "data",
        description="Folder of the real test DICOM (see ../shared/data/README.md).",
    )
    geometry_policy: GeometryPolicy = Field(
        default=GeometryPolicy.RESAMPLE,
        description="How irregular stacks (gantry tilt, uneven spacing) are handled.",
    )
    slice_position_tolerance: float = Field(
        default=0.05,
        gt=0,
        description=(
            "Largest distance of a slice from a regular grid, as a fraction of the slice step, "
            "that is still read as regular (bed boundaries shift slices by a few hundredths)."
        ),
    )
    model_store: Path = Field(
        default=Path.home() / ".local" / "share" / "fedseg" / "models",
        description="Writable folder where installed model bundles live (name/version/).",
    )
    shipped_models: Path = Field(
        default=_REPO_ROOT / "models",
        description="Read-only folder of the default bundles shipped with fedseg.",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")


def get_settings(**overrides: object) -> Settings:
    """Build the settings; ``overrides`` (e.g. from CLI flags) win over environment and file."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)  # type: ignore[arg-type]
