"""DICOM TLS for the C-STORE SCP, with real certificates made by the openssl CLI.

A sender with a certificate from the project CA stores over TLS; a plain-TCP sender, a TLS
sender without a client certificate, and one whose certificate another CA signed are refused,
and nothing of theirs is stored.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE

from service.db.models import Instance
from service.dimse.scp import ScpConfig, start_scp, tls_context
from service.errors import ConfigurationError
from service.storage.store import InstanceStore
from tests.requirements import missing
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.jobs.support import sqlite_db

DataDir = Callable[[str], Path]
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        missing("the openssl CLI is not installed (Debian package openssl)")
    subprocess.run([exe, *args], check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
             str(cert), "-days", "2", "-subj", f"/CN={name}")  # fmt: skip
    return cert, key


def _signed(folder: Path, name: str, ca: tuple[Path, Path], san: str) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    ext = folder / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}")  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("pki")
    ca, rogue = _ca(folder, "fedseg-ca"), _ca(folder, "rogue-ca")
    return {
        "ca": ca,
        "server": _signed(folder, "scp", ca, "IP:127.0.0.1"),
        "client": _signed(folder, "pacs", ca, "DNS:pacs"),
        "rogue": _signed(folder, "intruder", rogue, "DNS:intruder"),
    }


def _client_context(pki: dict[str, tuple[Path, Path]], cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"][0]))
    if cert is not None:
        context.load_cert_chain(*pki[cert])
    return context


def _send(port: int, path: Path, tls: ssl.SSLContext | None) -> int | None:
    """C-STORE one file; the status, or None when no association was established."""
    ae = AE(ae_title="PACS")
    ae.add_requested_context(PET_STORAGE)
    ae.acse_timeout = ae.network_timeout = 5
    tls_args = (tls, "127.0.0.1") if tls else None
    assoc = ae.associate("127.0.0.1", port, ae_title="FEDSEG", tls_args=tls_args)
    if not assoc.is_established:
        return None
    status = assoc.send_c_store(dcmread(path))
    assoc.release()
    return int(status.Status) if status else None


def test_c_store_over_tls_needs_a_certificate_from_the_project_ca(
    tmp_path: Path, data_dir: DataDir, pki: dict[str, tuple[Path, Path]]
) -> None:
    files = sorted(data_dir("sts-pet/ibsi_validation/dicom/STS_001/PET/image").glob("*.dcm"))
    _, factory = sqlite_db(tmp_path)
    port = free_port()
    server = tls_context(*pki["server"], cafile=pki["ca"][0])
    config = ScpConfig("FEDSEG", "127.0.0.1", port, ("PACS",), tls=server)
    stop = start_scp(config, factory, InstanceStore(tmp_path / "store"))
    try:
        wait_for_port(port)
        assert _send(port, files[0], _client_context(pki, "client")) == 0x0000
        assert _send(port, files[1], None) is None  # plain TCP to a TLS port
        assert _send(port, files[2], _client_context(pki, None)) is None  # no client cert
        assert _send(port, files[3], _client_context(pki, "rogue")) is None  # another CA
    finally:
        stop()
    with factory() as session:
        stored = [row.sop_instance_uid for row in session.query(Instance)]
    assert stored == [str(dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)]


def test_unloadable_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError, match="DICOM TLS"):
        tls_context(missing, missing)
