"""The endpoint's TLS identity: made once, and its fingerprint read without cryptography."""

from __future__ import annotations

import hashlib
import subprocess
import sys
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


def test_the_identity_is_made_by_a_child_so_the_agent_loads_no_cryptography(tmp_path: Path
                                                                              ) -> None:
    code = ("import sys; from pathlib import Path; from transports import tls; "
            f"tls.ensure_identity(Path({str(tmp_path)!r}), 'srv'); "
            "print(sorted(m for m in sys.modules if m.startswith('cryptography')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    assert len(tls.fingerprint(tmp_path / tls.CERT_FILE)) == 64


def test_without_a_child_the_identity_is_made_here(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    key, cert = tls.ensure_identity(tmp_path / "tls", "srv")
    assert key.exists() and len(tls.fingerprint(cert)) == 64
