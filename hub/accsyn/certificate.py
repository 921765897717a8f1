"""The accsyn API's TLS certificate when the config gives none: a self-signed pair made
once in the hub's data folder (the client does not verify certificates, so any will do;
a studio that wants its own gives ``accsyn_api.certificate`` and ``key``)."""

from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.errors import ConfigError
from hub.config import AccsynApiConfig

KEY_FILE = "accsyn-key.pem"
CERT_FILE = "accsyn-cert.pem"


def tls_context(given: AccsynApiConfig, data_dir: Path, name: str) -> ssl.SSLContext:
    """The server context of the configured pair, else of the hub's own."""
    if given.certificate is not None and given.key is not None:
        cert, key = Path(given.certificate).expanduser(), Path(given.key).expanduser()
    else:
        cert, key = own_pair(data_dir, name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the certificate {cert} and key {key}: {exc}",
                          key="accsyn_api.certificate") from None
    return context


def own_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """The certificate and key in ``folder``, made the first time."""
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ferry hub {name}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _write_private(path: Path, data: bytes) -> None:
    """Owner-only, written whole: a temporary file, fsync, rename."""
    temp = path.with_name(path.name + ".new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
