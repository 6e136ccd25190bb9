"""Pilot CA, server certificate and SuperNode keys."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from federation.certs import create_pilot_certificates
from federation.errors import FederationError


def test_server_certificate_is_signed_by_the_ca_for_the_hosts(tmp_path: Path) -> None:
    made = create_pilot_certificates(tmp_path, hosts=("fl.hospital.org", "10.0.0.5"), sites=["a"])
    ca = x509.load_pem_x509_certificate(made.ca_certificate.read_bytes())
    server = x509.load_pem_x509_certificate(made.server_certificate.read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fl.hospital.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert made.server_key.stat().st_mode & 0o077 == 0


def test_site_keys_are_openssh_nist_ec(tmp_path: Path) -> None:
    made = create_pilot_certificates(tmp_path, sites=["site-a"])
    private, public = made.supernode_keys["site-a"]
    key = load_ssh_public_key(public.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    own = load_ssh_private_key(private.read_bytes(), password=None)
    assert own.public_key().public_numbers() == key.public_numbers()  # type: ignore[union-attr]
    assert private.stat().st_mode & 0o077 == 0


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(FederationError, match="host"):
        create_pilot_certificates(tmp_path, hosts=())
    with pytest.raises(FederationError, match="plain file names"):
        create_pilot_certificates(tmp_path, sites=["../x"])
