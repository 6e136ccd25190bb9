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
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.inference.session import Engine, Mirroring, Precision
from service.qc.enum import QcPolicy
from service.storage.decoded_size import DEFAULT_MAX_DECODED_BYTES

# The repository layout puts the shared data beside the checkout: <repo>/../shared/data.
_REPO_ROOT = Path(__file__).resolve().parent.parent


class GeometryPolicy(StrEnum):
    """What the volume reader does with a stack that is not a regular grid."""

    #: Resample gantry-tilted and unevenly spaced stacks onto a regular grid, with a warning.
    RESAMPLE = "resample"
    #: Refuse any irregular stack with a :class:`~service.errors.DicomGeometryError`.
    STRICT = "strict"


class DestinationKind(StrEnum):
    """How results are sent to a destination."""

    DIMSE = "dimse"
    STOWRS = "stowrs"


class Destination(BaseModel):
    """A place results are sent to after each job (C-STORE SCP or STOW-RS endpoint)."""

    name: str = Field(min_length=1)
    kind: DestinationKind
    host: str = "127.0.0.1"
    port: int = Field(default=104, ge=1, le=65535)
    ae_title: str = Field(default="ANY-SCP", min_length=1, max_length=16)
    url: str = ""
    bearer_token: str = ""

    @model_validator(mode="after")
    def _check_kind(self) -> Destination:
        if self.kind is DestinationKind.STOWRS and not self.url:
            raise ValueError(f"destination {self.name!r}: a STOW-RS destination needs a url")
        return self


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
    ohif_dir: Path = Field(
        default=_REPO_ROOT / "build" / "ohif" / "dist",
        description="The OHIF Viewer build served at /viewer (`make ohif` installs it here).",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")
    qc_policy: QcPolicy = Field(
        default=QcPolicy.WITHHOLD,
        description=(
            "What happens to structures that fail QC: withhold (kept out of SEG and RTSTRUCT, "
            "listed in the SR), flag (sent, marked as failed) or off (no structure QC)."
        ),
    )
    inference_threads: int = Field(
        default=0,
        ge=0,
        description=(
            "onnxruntime intra-op threads of each model session (fedseg segment, the server's "
            "workers); 0 lets onnxruntime use one per physical core."
        ),
    )
    inference_precision: Precision = Field(
        default=Precision.F32,
        description=(
            "Arithmetic of the networks: f32 computes what the exported network computes; bf16 "
            "(engine openvino, CPUs with AMX or AVX512-BF16) is several times faster and "
            "changes labels near boundaries. Verified at load."
        ),
    )
    inference_mirroring: Mirroring = Field(
        default=Mirroring.MODEL,
        description=(
            "Test-time mirroring: model follows the model's recipe (an nnU-Net model mirrors "
            "along its trained axes, as nnUNetPredictor does by default; fedseg's U-Nets do "
            "not), on mirrors every model that allows it, off never mirrors (up to 8 times "
            "faster; labels change slightly near boundaries)."
        ),
    )
    inference_engine: Engine = Field(
        default=Engine.ONNXRUNTIME,
        description=(
            "Engine that runs the networks: onnxruntime (CPU, CUDA, TensorRT) or openvino (CPU). "
            "Verified at load: an engine or device that does not run as asked is an error."
        ),
    )

    # --- Clinical inference server (fedseg serve / fedseg worker) ---
    state_dir: Path = Field(
        default=Path.home() / ".local" / "share" / "fedseg" / "state",
        description="Folder of the embedded database, received instances and results.",
    )
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy URL of the job database; empty means SQLite (WAL) at "
            "<state_dir>/fedseg.db. Use postgresql+psycopg://... for several processes."
        ),
    )
    api_host: str = Field(default="127.0.0.1", description="Address the HTTP API binds to.")
    api_port: int = Field(default=8042, ge=1, le=65535, description="HTTP API port.")
    public_url: str = Field(
        default="",
        description=(
            "The address clients reach the API at (https://host[:port][/prefix]): every URL "
            "the server hands out (RetrieveURL, BulkDataURI) starts with it, never with the "
            "request's Host header. Empty: built from the API host, port and TLS settings."
        ),
    )
    tls_certfile: Path | None = Field(default=None, description="PEM certificate; enables TLS.")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key for TLS.")
    max_upload_bytes: int = Field(
        default=4 * 1024**3, gt=0, description="Largest accepted request body (STOW, upload)."
    )
    qido_max_results: int = Field(
        default=1000, gt=0, description="Most results one QIDO-RS search returns (a page)."
    )
    max_bundle_bytes: int = Field(
        default=2 * 1024**3, gt=0, description="Largest uncompressed model bundle accepted."
    )
    dicom_ae_title: str = Field(default="FEDSEG", min_length=1, max_length=16)
    dicom_port: int = Field(default=11112, ge=0, le=65535, description="C-STORE SCP port.")
    dicom_allowed_aes: list[str] = Field(
        default_factory=list,
        description="Calling AE titles the SCP accepts; empty means the SCP is not started.",
    )
    dicom_acse_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a DICOM connection has to request an association (and to finish a TLS "
            "handshake); one that stays silent is closed."
        ),
    )
    dicom_network_timeout_s: float = Field(
        default=60.0, gt=0, description="Seconds an association may stay silent before abort."
    )
    dicom_max_associations: int = Field(
        default=32,
        ge=1,
        description=(
            "Associations the SCP holds at once; more are rejected as transient (local limit "
            "exceeded) and the sender retries. Connections that never associate do not count."
        ),
    )
    dicom_max_associations_per_peer: int = Field(
        default=16,
        ge=1,
        description=(
            "Connections one IP address may hold at once, associated or not; more are closed "
            "at once, so one host cannot take the SCP from the others."
        ),
    )
    dicom_tls_certfile: Path | None = Field(
        default=None, description="PEM certificate of the C-STORE SCP; enables DICOM TLS."
    )
    dicom_tls_keyfile: Path | None = Field(default=None, description="PEM key of the SCP.")
    dicom_tls_cafile: Path | None = Field(
        default=None,
        description="PEM CA bundle; when set, senders must present a certificate it signed.",
    )
    quiet_period_s: float = Field(
        default=30.0, ge=0, description="A study is complete after this long without instances."
    )
    destinations: list[Destination] = Field(
        default_factory=list, description="Where results are sent (JSON list in the env)."
    )
    delivery_max_attempts: int = Field(default=5, ge=1)
    delivery_retry_s: float = Field(default=10.0, ge=0, description="First retry delay.")
    job_lease_s: float = Field(default=120.0, gt=0, description="Worker lease per heartbeat.")
    job_max_attempts: int = Field(default=3, ge=1, description="Tries before a job fails.")
    worker_poll_s: float = Field(default=1.0, gt=0, description="Idle worker poll interval.")
    job_memory_limit_bytes: int = Field(
        default=8 * 1024**3,
        ge=0,
        description=(
            "Memory one job may use: each job runs in a child process whose data segment is "
            "capped here (and which is stopped past it), so a job that needs more fails as "
            "'out of memory' and is not retried, while the API and the C-STORE SCP run on. "
            "0 sets no limit (the job still runs in its own process)."
        ),
    )
    min_free_bytes: int = Field(
        default=512 * 1024**2,
        ge=0,
        description=(
            "Free disk space kept in the state folder: received data that would leave less is "
            "refused (STOW-RS 507, C-STORE 0xA700), and what is stored stays intact."
        ),
    )
    max_decoded_instance_bytes: int = Field(
        default=DEFAULT_MAX_DECODED_BYTES,
        gt=0,
        description=(
            "Largest decoded size of one received instance: Rows x Columns x frames x samples "
            "x BitsAllocated/8, or the inflated size of a deflated data set. Larger instances "
            "are refused at ingest (STOW-RS and C-STORE 0xC000), before they can exhaust memory."
        ),
    )
    retention_days: float = Field(
        default=30.0, gt=0, description="Finished studies older than this are purged."
    )

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"FEDSEG_PUBLIC_URL {value!r} must be an http(s) URL with a host, "
                "such as https://fedseg.hospital.example"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                f"FEDSEG_PUBLIC_URL {value!r} must have no credentials, query or fragment"
            )
        return value.rstrip("/")

    def resolved_public_url(self) -> str:
        """The base URL of every URL the server hands out (no trailing slash).

        :attr:`public_url` when set; otherwise the API's own address, with the loopback address
        standing in for a wildcard bind (set ``FEDSEG_PUBLIC_URL`` for clients elsewhere).
        """
        if self.public_url:
            return self.public_url
        scheme = "https" if self.tls_certfile is not None else "http"
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
            self.api_host, self.api_host
        )
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.api_port}"

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside :attr:`state_dir`."""
        return self.database_url or f"sqlite:///{self.state_dir / 'fedseg.db'}"


def get_settings(**overrides: object) -> Settings:
    """Build the settings; ``overrides`` (e.g. from CLI flags) win over environment and file."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)  # type: ignore[arg-type]
