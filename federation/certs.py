"""A pilot certificate authority, the SuperLink's TLS certificate and SuperNode keys.

For a pilot only: a production federation should use the hospital PKI. The CA signs one server
certificate whose subject alternative names list every name and address sites dial. Each site
gets an EC key pair (OpenSSH format, NIST P-384) that the SuperLink operator registers with
``flwr supernode register``; the private key never leaves the site.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.errors import FederationError


@dataclass(frozen=True)
class PilotCertificates:
    """Paths written by :func:`create_pilot_certificates`."""

    ca_certificate: Path
    server_certificate: Path
    server_key: Path
    supernode_keys: dict[str, tuple[Path, Path]]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedseg pilot"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_pilot_certificates(
    out_dir: Path,
    hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    sites: Sequence[str] = (),
    days: int = 365,
) -> PilotCertificates:
    """Write ``ca.crt``, ``server.pem``, ``server.key`` and ``<site>.key``/``.pub`` pairs.

    Raises
    ------
    FederationError
        If no host is given or a site name is not a plain file name.
    """
    if not hosts:
        raise FederationError("the server certificate needs at least one host name or address")
    bad = [s for s in sites if not s or "/" in s or s.startswith(".")]
    if bad:
        raise FederationError(f"site names must be plain file names, got {bad}")
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("fedseg pilot CA"))
        .issuer_name(_name("fedseg pilot CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    paths = PilotCertificates(
        ca_certificate=out_dir / "ca.crt",
        server_certificate=out_dir / "server.pem",
        server_key=out_dir / "server.key",
        supernode_keys={},
    )
    paths.ca_certificate.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.server_certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_private(paths.server_key, _pem_key(server_key))
    _write_private(out_dir / "ca.key", _pem_key(ca_key))
    for site in sites:
        paths.supernode_keys[site] = create_supernode_keys(out_dir / site)
    return paths


def create_supernode_keys(stem: Path) -> tuple[Path, Path]:
    """Write ``<stem>.key`` (OpenSSH private) and ``<stem>.pub``; returns both paths."""
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = stem.with_suffix(".key"), stem.with_suffix(".pub")
    _write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public
