"""The accsyn API's TLS certificate when the config gives none: a self-signed pair made
once in the hub's data folder (the client does not verify certificates, so any will do;
a studio that wants its own gives ``accsyn_api.certificate`` and ``key``)."""

from __future__ import annotations

import ssl
from pathlib import Path

from core.errors import ConfigError
from core.selfsigned import make_self_signed
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
    make_self_signed(key_path, cert_path, f"ferry hub {name}")
    return cert_path, key_path
