"""Sealed envelopes (protocol/sealing.py): only the addressed organizations read them,
the sender is proven, and every kind of wrong envelope fails with a reason."""

from __future__ import annotations

import base64
import json
from functools import cache

import pytest

from protocol import sealing
from protocol.sealing import SealError
from tests.helpers import REFERENCE_PUBLIC_KEY as REFERENCE_KEY


@cache
def key(org: str) -> bytes:
    """One private key per organization name, made once per test run."""
    return sealing.new_private_key()


def pub(org: str) -> str:
    return sealing.public_key(key(org))


def sealed_for(*readers: str, data: bytes = b"input of the run", sender: str = "A") -> bytes:
    return sealing.seal(data, sender=sender, sender_key=key(sender),
                        recipients={r: pub(r) for r in readers})


def test_only_the_addressed_organizations_read_it() -> None:
    envelope = sealed_for("B", "C", data=b"\x00secret\xff" * 1000)
    for reader in ("B", "C"):
        assert sealing.open_sealed(envelope, reader=reader, reader_key=key(reader),
                                   sender_public=pub("A")) == b"\x00secret\xff" * 1000
    assert b"secret" not in envelope  # what the hub stores is ciphertext
    with pytest.raises(SealError, match="not addressed to organization D"):
        sealing.open_sealed(envelope, reader="D", reader_key=key("D"), sender_public=pub("A"))
    # a reader that claims B's place without B's key
    with pytest.raises(SealError, match="key mismatch"):
        sealing.open_sealed(envelope, reader="B", reader_key=key("D"), sender_public=pub("A"))
    assert sealing.sender_of(envelope) == "A"


def test_the_sender_is_proven() -> None:
    envelope = sealed_for("B")
    # somebody else's key as A's: the signature does not match
    with pytest.raises(SealError, match="does not match organization A's key"):
        sealing.open_sealed(envelope, reader="B", reader_key=key("B"), sender_public=pub("C"))
    # C re-signs A's envelope under its own name: the data no longer decrypts (bound to 'from')
    found = json.loads(envelope)
    found["from"] = "C"
    forged = _resign(found, "C")
    with pytest.raises(SealError, match="changed on the way"):
        sealing.open_sealed(forged, reader="B", reader_key=key("B"), sender_public=pub("C"))


def _resign(found: dict[str, object], signer: str) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization

    private = serialization.load_pem_private_key(key(signer), password=None)
    signature = private.sign(sealing._signed_part(found), sealing._PSS, hashes.SHA256())  # type: ignore[union-attr, call-arg, arg-type]
    found["sig"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return json.dumps(found).encode()


@pytest.mark.parametrize("change, reason", [
    (lambda e: {**e, "data": e["data"][:-4] + "AAAA"}, "does not match organization A's key"),
    (lambda e: {**e, "to": {"B": e["to"]["B"], "X": e["to"]["B"]}}, "does not match"),
    (lambda e: {**e, "v": 2}, "unknown envelope version"),
    (lambda e: {k: v for k, v in e.items() if k != "sig"}, "expected v, alg, from, to"),
    (lambda e: {**e, "sig": 5}, "'sig' must be base64"),
    (lambda e: {**e, "to": {}}, "malformed"),
    (lambda e: [1, 2], "not a sealed envelope"),
])
def test_a_wrong_envelope_fails_with_its_reason(change, reason: str) -> None:
    envelope = change(json.loads(sealed_for("B")))
    with pytest.raises(SealError, match=reason):
        sealing.open_sealed(json.dumps(envelope), reader="B", reader_key=key("B"),
                            sender_public=pub("A"))


def test_what_is_not_an_envelope_or_a_key_is_named() -> None:
    for junk in (b"", b"not json", b"\xff\xfe", b"{}"):
        with pytest.raises(SealError, match="not a sealed envelope"):
            sealing.parse(junk)
    with pytest.raises(SealError, match="not base64 of a PEM public key"):
        sealing.seal(b"x", sender="A", sender_key=key("A"), recipients={"B": "nonsense"})
    with pytest.raises(SealError, match="at least one recipient"):
        sealing.seal(b"x", sender="A", sender_key=key("A"), recipients={})
    with pytest.raises(SealError, match="not a PEM private key"):
        sealing.seal(b"x", sender="A", sender_key=b"junk", recipients={"B": pub("B")})


def test_the_reference_key_format_is_the_published_one() -> None:
    # the hub keeps base64 of a PEM public key, as the reference's import file does
    assert base64.b64decode(pub("A")).startswith(b"-----BEGIN PUBLIC KEY-----")
    assert sealing.same_key(key("A"), pub("A")) and not sealing.same_key(key("A"), pub("B"))
    # an organization imported with the reference's example key can be sealed for
    assert sealing.seal(b"x", sender="A", sender_key=key("A"), recipients={"IKNL": REFERENCE_KEY})
