"""Sealed inputs and results of encrypted collaborations: only the addressed
organizations can read them, anyone can check who sealed them, and nobody can
change them unnoticed.

Each organization has one RSA key pair; its public key is what the hub keeps
in ``Organization.public_key``, as the reference has it: base64 of a PEM
``PUBLIC KEY``. A seal is authenticated encryption with a fresh AES-256-GCM
key, that key wrapped for each recipient with RSA-OAEP (SHA-256), and the
whole envelope signed by the sender with RSA-PSS (SHA-256). The hub stores and
passes envelopes; it never holds a key that opens one.

An envelope is compact JSON::

    {"v": 1, "alg": "RSA-OAEP-256+A256GCM+PS256", "from": "<org id>",
     "to": {"<org id>": "<wrapped key>", ...}, "nonce": "...", "data": "...",
     "sig": "..."}

(binary values base64url, no padding). The signature covers every other field,
and the GCM tag also binds ``from`` and ``to``: an envelope re-addressed or
re-signed by someone else fails to open.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import FerryError

VERSION = 1
ALG = "RSA-OAEP-256+A256GCM+PS256"
KEY_BITS = 3072
MAX_ENVELOPE = 64 * 1024 * 1024
MIN_KEY_BITS = 2048

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)


class SealError(FerryError, ValueError):
    """An envelope that cannot be made or opened; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: Any, field: str) -> bytes:
    if not isinstance(text, str):
        raise SealError(f"envelope field '{field}' must be base64 text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SealError(f"envelope field '{field}' is not base64") from None


def new_private_key() -> bytes:
    """A fresh organization key pair, as unencrypted PKCS#8 PEM (keep it owner-only)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _private(pem: bytes) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise SealError("the organization's private key is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SealError("the organization's private key is not an RSA key")
    return key


def public_key(private_pem: bytes) -> str:
    """The public half, as the hub keeps it: base64 of its PEM."""
    pem = _private(private_pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(pem).decode()


def _public(published: str, whose: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(base64.b64decode(published, validate=True))
    except (binascii.Error, ValueError, TypeError):
        raise SealError(f"the public key of {whose} is not base64 of a PEM public key") \
            from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_KEY_BITS:
        raise SealError(f"the public key of {whose} is not an RSA key of at least "
                        f"{MIN_KEY_BITS} bits")
    return key


def parse_public_key(published: str) -> rsa.RSAPublicKey:
    """A published organization key, checked: ``SealError`` says what is wrong."""
    return _public(published, "the organization")


def same_key(private_pem: bytes, published: str) -> bool:
    """Is ``published`` the public half of this private key?"""
    try:
        mine = _private(private_pem).public_key().public_numbers()
        return _public(published, "the organization").public_numbers() == mine
    except SealError:
        return False


def same_public(one: str, other: str) -> bool:
    """Are two published keys the same key (however their text is laid out)? False when
    either is not a key."""
    try:
        return _public(one, "one key").public_numbers() == \
            _public(other, "the other key").public_numbers()
    except SealError:
        return False


def _signed_part(envelope: dict[str, Any]) -> bytes:
    return json.dumps({k: envelope[k] for k in ("v", "alg", "from", "to", "nonce", "data")},
                      sort_keys=True, separators=(",", ":")).encode()


def _aad(sender: str, recipients: list[str]) -> bytes:
    return json.dumps({"from": sender, "to": sorted(recipients)}, separators=(",", ":")).encode()


def seal(data: bytes, *, sender: str, sender_key: bytes, recipients: dict[str, str]) -> bytes:
    """``data`` sealed by organization ``sender`` (its private key PEM) for the
    organizations in ``recipients`` (id: published public key)."""
    if not recipients:
        raise SealError("a seal needs at least one recipient")
    signer = _private(sender_key)
    content_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    wrapped = {org: _b64(_public(key, f"organization {org}").encrypt(content_key, _OAEP))
               for org, key in sorted(recipients.items())}
    envelope: dict[str, Any] = {
        "v": VERSION, "alg": ALG, "from": sender, "to": wrapped, "nonce": _b64(nonce),
        "data": _b64(AESGCM(content_key).encrypt(nonce, data, _aad(sender, list(wrapped))))}
    envelope["sig"] = _b64(signer.sign(_signed_part(envelope), _PSS, hashes.SHA256()))
    return json.dumps(envelope, separators=(",", ":")).encode()


def parse(envelope: bytes | str) -> dict[str, Any]:
    """The envelope's fields, checked for shape (not opened): what the hub checks before
    storing one."""
    if isinstance(envelope, str):
        envelope = envelope.encode()
    if len(envelope) > MAX_ENVELOPE:
        raise SealError(f"envelope is larger than {MAX_ENVELOPE} bytes")
    try:
        found = json.loads(envelope)
    except (ValueError, UnicodeDecodeError):
        raise SealError("not a sealed envelope (not JSON)") from None
    if not isinstance(found, dict) or set(found) != {"v", "alg", "from", "to", "nonce",
                                                      "data", "sig"}:
        raise SealError("not a sealed envelope (expected v, alg, from, to, nonce, data, sig)")
    if found["v"] != VERSION or found["alg"] != ALG:
        raise SealError(f"unknown envelope version or algorithm ({found['v']!r}, "
                        f"{found['alg']!r}); this agent reads version {VERSION}, {ALG}")
    if not isinstance(found["from"], str) or not isinstance(found["to"], dict) \
            or not found["to"] or not all(isinstance(k, str) for k in found["to"]):
        raise SealError("envelope fields 'from' and 'to' are malformed")
    return found


def sender_of(envelope: bytes | str) -> str:
    return str(parse(envelope)["from"])


def open_sealed(envelope: bytes | str, *, reader: str, reader_key: bytes,
                sender_public: str) -> bytes:
    """The data of an envelope addressed to organization ``reader``, after checking that
    the organization it names as sender (whose published key is ``sender_public``)
    sealed it. ``SealError`` says what is wrong."""
    found = parse(envelope)
    if reader not in found["to"]:
        raise SealError(f"the envelope is not addressed to organization {reader} (it is "
                        f"for {', '.join(sorted(found['to']))})")
    try:
        _public(sender_public, f"organization {found['from']}").verify(
            _unb64(found["sig"], "sig"), _signed_part(found), _PSS, hashes.SHA256())
    except InvalidSignature:
        raise SealError(f"the signature does not match organization {found['from']}'s key: "
                        "sealed by someone else, or changed on the way") from None
    try:
        content_key = _private(reader_key).decrypt(_unb64(found["to"][reader], "to"), _OAEP)
    except ValueError:
        raise SealError(f"this organization's private key does not open the envelope: it "
                        f"was sealed for another key of organization {reader} (key "
                        "mismatch)") from None
    if len(content_key) != 32:
        raise SealError("the envelope's content key is malformed")
    try:
        return AESGCM(content_key).decrypt(_unb64(found["nonce"], "nonce"),
                                           _unb64(found["data"], "data"),
                                           _aad(found["from"], list(found["to"])))
    except (InvalidTag, ValueError):
        raise SealError("the envelope's data does not decrypt: changed on the way") from None
