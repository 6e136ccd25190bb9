"""The C-ECHO and C-STORE SCP: instances from allow-listed AEs go to the instance store.

Every accepted instance restarts its study's quiet period; the worker queues the study once
the period passes (:func:`service.jobs.intake.enqueue_quiet_studies`).

An association must name this SCP's AE title (the called AE) and an allowed calling AE title,
or it is rejected with that reason (PS3.8 9.3.4). Connection and association limits, and the
timeouts for peers that connect and say nothing: :mod:`service.dimse.admission`.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy.orm import Session, sessionmaker

from service.dimse.admission import Admission, GuardedServer
from service.errors import ConfigurationError
from service.storage.decoded_size import DEFAULT_MAX_DECODED_BYTES
from service.storage.errors import InstanceRejectedError, InsufficientStorageError
from service.storage.ingest import ingest
from service.storage.store import InstanceStore

logger = logging.getLogger(__name__)

#: C-STORE statuses (PS3.4 Annex B.2.3).
SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700
#: pynetdicom's association limit, set out of reach: :class:`Admission` applies the real one.
_UNCOUNTED = 1_000_000


@dataclass(frozen=True)
class ScpConfig:
    """Where the SCP listens and whom it accepts."""

    ae_title: str
    host: str
    port: int
    allowed_aes: tuple[str, ...]
    #: Free disk space the store keeps; C-STOREs that would leave less get 0xA700.
    min_free_bytes: int = 0
    #: Largest decoded size of one instance; larger ones get 0xC000 (see service.storage).
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    #: DICOM TLS (PS3.15 B.1): a server context from :func:`tls_context`, or None for plain TCP.
    tls: ssl.SSLContext | None = None
    #: Concurrent associations accepted; more are rejected as transient (the sender retries).
    max_associations: int = 32
    #: Connections one peer (IP address) may hold, associated or not; more are closed at once.
    max_associations_per_peer: int = 16
    #: Seconds a connection has to request an association (and for a TLS handshake).
    acse_timeout_s: float = 10.0
    #: Seconds an association may stay silent before it is aborted.
    network_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.allowed_aes:
            raise ConfigurationError(
                "the DICOM SCP needs at least one allowed calling AE title "
                "(FEDSEG_DICOM_ALLOWED_AES='[\"PACS\"]')"
            )
        if self.max_associations < 1 or self.max_associations_per_peer < 1:
            raise ConfigurationError(
                "FEDSEG_DICOM_MAX_ASSOCIATIONS and FEDSEG_DICOM_MAX_ASSOCIATIONS_PER_PEER must "
                f"be at least 1, not {self.max_associations} and {self.max_associations_per_peer}"
            )
        if self.acse_timeout_s <= 0 or self.network_timeout_s <= 0:
            raise ConfigurationError(
                "FEDSEG_DICOM_ACSE_TIMEOUT_S and FEDSEG_DICOM_NETWORK_TIMEOUT_S must be positive"
            )


def tls_context(certfile: Path, keyfile: Path, cafile: Path | None = None) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+); with ``cafile``, senders must present a certificate.

    Raises
    ------
    ConfigurationError
        If the certificate, key or CA file cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
        if cafile is not None:
            context.load_verify_locations(cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"DICOM TLS: cannot load {certfile}/{keyfile}/{cafile}: {exc}"
        ) from exc
    return context


def _store_handler(
    factory: sessionmaker[Session], store: InstanceStore, config: ScpConfig
) -> Callable[[evt.Event], int]:
    def handle(event: evt.Event) -> int:
        calling = event.assoc.requestor.ae_title.strip()
        try:
            data = event.encoded_dataset()
        except Exception:
            return CANNOT_UNDERSTAND
        try:
            with factory() as session, session.begin():
                ingest(
                    session,
                    store,
                    data,
                    f"dimse:{calling}",
                    min_free_bytes=config.min_free_bytes,
                    max_decoded_bytes=config.max_decoded_bytes,
                )
        except InstanceRejectedError:
            return CANNOT_UNDERSTAND
        except InsufficientStorageError:
            return OUT_OF_RESOURCES
        except OSError:
            logger.exception("C-STORE: cannot write the instance")
            return OUT_OF_RESOURCES
        return SUCCESS

    return handle


def start_scp(
    config: ScpConfig, factory: sessionmaker[Session], store: InstanceStore
) -> Callable[[], None]:
    """Start the SCP in background threads; returns a function that stops it."""
    ae = AE(ae_title=config.ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    ae.require_calling_aet = list(config.allowed_aes)
    ae.require_called_aet = True
    ae.acse_timeout = config.acse_timeout_s
    ae.network_timeout = config.network_timeout_s
    # pynetdicom's own count includes connections that never associated; the admission
    # counts requested associations only (and connections per peer), so its check is moot.
    ae.maximum_associations = _UNCOUNTED
    admission = Admission(config.max_associations, config.max_associations_per_peer)
    server = ae.make_server(
        (config.host, config.port),
        evt_handlers=[
            (evt.EVT_C_STORE, _store_handler(factory, store, config)),
            (evt.EVT_REQUESTED, admission.on_requested),
        ],
        server_class=GuardedServer,
        admission=admission,
        tls=config.tls,
        handshake_timeout_s=config.acse_timeout_s,
    )
    thread = threading.Thread(target=server.serve_forever, name="fedseg-dicom-scp", daemon=True)
    thread.start()
    logger.info(
        "DICOM SCP %s listening on %s:%d%s",
        config.ae_title,
        config.host,
        config.port,
        " (TLS)" if config.tls else "",
    )

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=10)

    return stop
