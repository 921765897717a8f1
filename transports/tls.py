"""The transfer endpoint's TLS identity: a self-signed certificate, pinned by its peers.

Each serving agent makes a key and a certificate once (kept 0600 in its data
folder) and reports the certificate's SHA-256 fingerprint to the hub. A peer
that connects learns the fingerprint from the hub with its transfer task and
accepts that certificate alone (``pin``): no certificate authority, no host
names, and a stolen name cannot be used to listen in.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import ssl
from pathlib import Path

import aiohttp

KEY_FILE = "transfer-key.pem"
CERT_FILE = "transfer-cert.pem"


def ensure_identity(folder: Path, name: str) -> tuple[Path, Path]:
    """The key and certificate files in ``folder``, made if missing."""
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    folder.mkdir(parents=True, exist_ok=True)
    # cryptography (6 MiB resident) is loaded only on the one start that makes the identity
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ferry {name}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(socket.gethostname()[:63]
                                                                     or "localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _write_private(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(temp, path)


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the certificate (DER), hex: what the hub records and peers pin."""
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{cert_path} holds no PEM certificate: {exc}") from None
    return hashlib.sha256(der).hexdigest()


def server_context(key_path: Path, cert_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def pin(fingerprint_hex: str) -> aiohttp.Fingerprint:
    """For a client request: accept exactly the certificate with this fingerprint."""
    try:
        digest = bytes.fromhex(fingerprint_hex)
    except ValueError:
        raise ValueError(f"not a SHA-256 fingerprint: {fingerprint_hex!r}") from None
    return aiohttp.Fingerprint(digest)
