"""Who may hold a connection or an association with the SCP, and for how long.

pynetdicom counts every accepted TCP connection as an association from the moment it is
accepted, until it sends an A-ASSOCIATE-RQ or its ACSE timeout passes. Forty idle sockets
from one host therefore filled the 32 association slots and refused every real sender
(issue 17, item 10); and with TLS the handshake ran in the accept loop, so one silent socket
stopped all intake. Here instead:

* a peer (an IP address) may hold at most ``per_peer`` connections, associated or not;
  the next one is closed at once;
* an association counts against the global limit only once it is requested; past the limit
  it is rejected as transient, local limit exceeded (PS3.8 9.3.4), so the sender retries;
* a connection that sends nothing within the ACSE timeout is closed, and one that hangs up
  frees its slot at once (pynetdicom held both for its whole ACSE timeout); a TLS handshake
  runs in the connection's own thread under that same timeout.
"""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import ssl
import threading
from collections import Counter
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

logger = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ: rejected transient, DUL service-provider (presentation), local limit exceeded.
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)


class Admission:
    """Counts connections per peer and requested associations overall (thread-safe)."""

    def __init__(self, max_associations: int, max_per_peer: int) -> None:
        if max_associations < 1 or max_per_peer < 1:
            raise ValueError("association limits must be at least 1")
        self.max_associations = max_associations
        self.max_per_peer = max_per_peer
        self._lock = threading.Lock()
        self._peers: Counter[str] = Counter()
        self._associations: set[int] = set()

    def connect(self, peer: str) -> bool:
        """Take a connection slot of ``peer``; False when it holds its limit already."""
        with self._lock:
            if self._peers[peer] >= self.max_per_peer:
                return False
            self._peers[peer] += 1
            return True

    def disconnect(self, peer: str) -> None:
        """Give the slot back (the connection ended)."""
        with self._lock:
            self._peers[peer] -= 1
            if self._peers[peer] <= 0:
                del self._peers[peer]

    def admit(self, association: Association) -> bool:
        """Count a requested association; False when the global limit is reached."""
        with self._lock:
            if len(self._associations) >= self.max_associations:
                return False
            self._associations.add(id(association))
            return True

    def leave(self, association: Association) -> None:
        """Forget an association that ended (a no-op for one never admitted)."""
        with self._lock:
            self._associations.discard(id(association))

    def on_requested(self, event: evt.Event) -> None:
        """``EVT_REQUESTED``: reject the association past the global limit."""
        if not self.admit(event.assoc):
            logger.warning(
                "DICOM association from %s refused: %d associations at once is the limit",
                event.assoc.requestor.address,
                self.max_associations,
            )
            event.assoc.acse.send_reject(*REJECT_LOCAL_LIMIT)
            event.assoc.kill()  # as pynetdicom's own rejections: waits until the peer closes


class _ConnectionHandler(RequestHandler):
    """pynetdicom's handler, but the connection's thread lives as long as its association."""

    def handle(self) -> None:
        association = self._create_association()
        evt.trigger(association, evt.EVT_CONN_OPEN, {"address": self.client_address})
        association.start()
        try:
            association.join()
        finally:
            admission: Admission = self.server.admission  # type: ignore[attr-defined]
            admission.leave(association)


class GuardedServer(ThreadedAssociationServer):
    """An association server that applies an :class:`Admission` and handshakes TLS per thread.

    Made by :meth:`pynetdicom.AE.make_server` with ``server_class=GuardedServer``.
    """

    daemon_threads = True

    def __init__(
        self,
        ae: AE,
        address: tuple[str, int],
        ae_title: str,
        contexts: list[PresentationContext],
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: list[evt.EventHandlerType] | None = None,
        *,
        admission: Admission,
        tls: ssl.SSLContext | None,
        handshake_timeout_s: float,
    ) -> None:
        if ssl_context is not None:
            raise ValueError("pass the TLS context as tls= (handshakes run per connection)")
        self.admission = admission
        self.tls = tls
        self.handshake_timeout_s = handshake_timeout_s
        super().__init__(
            ae,
            address,
            ae_title,
            contexts,
            None,
            evt_handlers=evt_handlers,
            request_handler=_ConnectionHandler,
        )

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept only: a TLS handshake here would stall the accept loop on a silent peer."""
        assert self.socket is not None
        return self.socket.accept()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Keep the connection when its peer has a free slot (else it is closed at once)."""
        peer = str(client_address[0])
        if self.admission.connect(peer):
            return True
        logger.warning(
            "DICOM connection from %s closed: it holds %d connections, its limit",
            peer,
            self.admission.max_per_peer,
        )
        return False

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Handshake (TLS), then serve the association; the peer's slot is freed at its end."""
        peer = str(client_address[0])
        try:
            if self.tls is not None:
                request = self._handshake(request)
                if request is None:
                    return
            if not self._await_request(request):
                request.close()
                return
            super().process_request_thread(request, client_address)
        finally:
            self.admission.disconnect(peer)

    def _await_request(self, request: socket.socket) -> bool:
        """Wait (up to the ACSE timeout) for the peer's first bytes; False if it closes or not.

        pynetdicom would hold a silent connection, closed or not, for its whole ACSE timeout;
        here a peer that hangs up frees its slot at once.
        """
        if isinstance(request, ssl.SSLSocket) and request.pending():
            return True
        readable, _, _ = select.select([request], [], [], self.handshake_timeout_s)
        if not readable:
            logger.info("DICOM connection closed: no association request within the timeout")
            return False
        if isinstance(request, ssl.SSLSocket):
            return True  # a TLS close arrives as a record; pynetdicom reads it as a close
        try:
            return request.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _handshake(self, request: socket.socket) -> ssl.SSLSocket | None:
        assert self.tls is not None
        request.settimeout(self.handshake_timeout_s)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            logger.warning("DICOM TLS handshake failed: %s", type(exc).__name__)
            request.close()
            return None
        wrapped.settimeout(None)
        return wrapped

    def shutdown(self) -> None:
        """Stop serving and close the socket (not registered with the AE's own servers)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()
