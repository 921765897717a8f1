"""The endpoint's TLS identity: made once, and its fingerprint and public key pin read
without cryptography."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

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
            f"tls.public_key_pin(Path({str(tmp_path)!r}) / tls.CERT_FILE); "
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


def _pin(cert: x509.Certificate) -> str:
    """What curl's documentation says to pin: SHA-256 of the DER SubjectPublicKeyInfo."""
    info = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256//" + base64.b64encode(hashlib.sha256(info).digest()).decode()


def test_the_pin_is_the_sha256_of_the_public_key_as_curl_takes_it(tmp_path: Path) -> None:
    _, cert = tls.ensure_identity(tmp_path, "srv")
    assert tls.public_key_pin(cert) == _pin(x509.load_pem_x509_certificate(cert.read_bytes()))


@pytest.mark.parametrize("kind", ["rsa", "ec-v1"])
def test_the_pin_is_read_from_other_certificates_too(tmp_path: Path, kind: str) -> None:
    """Long DER lengths (a 4096-bit RSA key, a long name) and a version-1 certificate,
    which has no version field: the public key is still found where it is."""
    key = rsa.generate_private_key(65537, 4096) if kind == "rsa" \
        else ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x" * 60),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "o" * 60)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    cert = builder.sign(key, hashes.SHA256())
    der = cert.public_bytes(serialization.Encoding.DER)
    if kind == "ec-v1":  # drop the [0] version field by hand (cryptography makes v3 only)
        der = _without_version(der)
    path = tmp_path / "cert.pem"
    path.write_text(ssl_pem(der))
    assert tls.public_key_pin(path) == _pin(cert)


def test_a_broken_certificate_has_no_pin(tmp_path: Path) -> None:
    _, cert = tls.ensure_identity(tmp_path, "srv")
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    cut = tmp_path / "cut.pem"
    cut.write_text(ssl_pem(der[:40]))
    with pytest.raises(ValueError, match=r"cut\.pem holds no PEM certificate"):
        tls.public_key_pin(cut)


def ssl_pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def _without_version(der: bytes) -> bytes:
    """The certificate with its TBSCertificate's version field removed (lengths fixed)."""
    def encode(tag: int, body: bytes) -> bytes:
        n = len(body)
        if n < 0x80:
            return bytes([tag, n]) + body
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag, 0x80 | len(size)]) + size + body

    _, start, end = tls._tlv(der, 0)
    _, tbs_start, tbs_end = tls._tlv(der, start)
    version_end = tls._tlv(der, tbs_start)[2]
    tbs = encode(0x30, der[version_end:tbs_end])
    return encode(0x30, tbs + der[tbs_end:end])
