"""The transfer endpoint's TLS identity: a self-signed certificate, pinned by its peers.

Each serving agent makes a key and a certificate once (kept 0600 in its data
folder) and reports the certificate's SHA-256 fingerprint to the hub, and the SHA-256
of its public key for ``curl --pinnedpubkey`` (download links). A peer
that connects learns the fingerprint from the hub with its transfer task and
accepts that certificate alone (``pin``): no certificate authority, no host
names, and a stolen name cannot be used to listen in.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import structlog

from core.selfsigned import make_self_signed

log = structlog.get_logger("transports.tls")

KEY_FILE = "transfer-key.pem"
CERT_FILE = "transfer-cert.pem"


def ensure_identity(folder: Path, name: str) -> tuple[Path, Path]:
    """The key and certificate files in ``folder``, made if missing.

    They are made by a short-lived child process (``python -m transports.tls``): the agent
    that serves for months never loads cryptography (6 MiB resident) for a one-time job.
    Where no child can be started (a frozen Windows service host), they are made here.
    """
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    try:
        subprocess.run([sys.executable, "-m", "transports.tls", str(folder), name], check=True,
                       capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("making the TLS identity in this process", reason=str(exc)[:200])
    if not (key_path.exists() and cert_path.exists()):
        make_identity(folder, name)
    return key_path, cert_path


def make_identity(folder: Path, name: str) -> tuple[Path, Path]:
    """A new key and self-signed certificate in ``folder`` (replacing any there)."""
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    make_self_signed(key_path, cert_path, f"ferry {name}",
                     dns_name=socket.gethostname()[:63] or "localhost")
    return key_path, cert_path


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the certificate (DER), hex: what the hub records and peers pin."""
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{cert_path} holds no PEM certificate: {exc}") from None
    return hashlib.sha256(der).hexdigest()


def public_key_pin(cert_path: Path) -> str:
    """``sha256//<base64>``: the SHA-256 of the certificate's SubjectPublicKeyInfo (DER),
    as ``curl --pinnedpubkey`` takes it. Read from the DER by hand, like ``fingerprint``:
    the serving agent never loads cryptography for it."""
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
        info = subject_public_key_info(der)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{cert_path} holds no PEM certificate: {exc}") from None
    return "sha256//" + base64.b64encode(hashlib.sha256(info).digest()).decode()


def subject_public_key_info(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo of an X.509 certificate (DER), whole: the seventh field
    of its TBSCertificate, counting the version that may be left out (RFC 5280 §4.1)."""
    _, body, _ = _tlv(der, 0)  # Certificate ::= SEQUENCE
    _, pos, end = _tlv(der, body)  # tbsCertificate ::= SEQUENCE
    if pos < end and der[pos] == 0xA0:  # [0] EXPLICIT version
        pos = _tlv(der, pos)[2]
    for _ in range(5):  # serialNumber, signature, issuer, validity, subject
        pos = _tlv(der, pos)[2]
    start = pos
    tag, _, stop = _tlv(der, start)
    if tag != 0x30 or stop > end:
        raise ValueError("no SubjectPublicKeyInfo where the certificate should have it")
    return der[start:stop]


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """The DER item at ``pos``: its tag, where its content starts and where it ends."""
    if pos + 2 > len(der):
        raise ValueError("truncated DER")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes are the length
        count = length & 0x7F
        if not 0 < count <= 4 or pos + count > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


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


if __name__ == "__main__":  # python -m transports.tls FOLDER NAME (ensure_identity's child)
    make_identity(Path(sys.argv[1]), sys.argv[2])
