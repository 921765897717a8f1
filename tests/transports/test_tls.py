"""The endpoint's TLS identity: made once, and its fingerprint read without cryptography."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from transports import tls


def test_the_fingerprint_is_the_sha256_of_the_der_certificate(tmp_path: Path) -> None:
    key, cert = tls.ensure_identity(tmp_path, "srv")
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    assert tls.fingerprint(cert) == hashlib.sha256(der).hexdigest()
    assert (key.stat().st_mode & 0o777) == 0o600
    assert tls.ensure_identity(tmp_path, "srv") == (key, cert)  # kept, not made again
    assert tls.fingerprint(cert) == hashlib.sha256(der).hexdigest()


def test_a_file_that_is_no_certificate_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "transfer-cert.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match=r"transfer-cert\.pem holds no PEM certificate"):
        tls.fingerprint(bad)
