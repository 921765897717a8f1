"""A self-signed TLS identity: a P-256 key and a ten-year certificate, written owner-only
and whole. The transfer endpoint's identity (``transports/tls.py``, pinned by its peers)
and the hub's accsyn API certificate (``hub/accsyn/certificate.py``) are both made here."""

from __future__ import annotations

import datetime
from pathlib import Path

from core.config import write_atomic


def make_self_signed(key_path: Path, cert_path: Path, common_name: str,
                     dns_name: str | None = None) -> None:
    """Write a new key to ``key_path`` and its self-signed certificate to ``cert_path``
    (replacing any there), each 0600; ``dns_name``: a subject alternative name."""
    # cryptography is loaded only by the process that makes the identity
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=3650)))
    if dns_name is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    write_atomic(key_path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
