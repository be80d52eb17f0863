"""Signed digests and anchors: Ed25519 signatures over the event log's digest hashes.

A hash chain shows that records were changed, unless someone rewrote the whole tail and
its digests. A signature closes that gap for whoever holds only the public key: without
the private key, a changed digest (and so any change to its segment) cannot be re-signed.
Ed25519 (through ``cryptography``) rather than an HMAC, so an auditor checks the log with
a public key that cannot sign.

The signed message is ``<schema>\\n<hash>`` (the digest's ``digest_hash``, or an anchor's
head), so a signature over one kind of thing never passes for another.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "SIGNING_KEY_ENV",
    "SigningKeyError",
    "Signer",
    "check_signature",
    "generate_key_pair",
    "load_public_key",
    "load_signer",
]

SIGNING_KEY_ENV = "AIMSGUARD_EVENT_LOG_SIGNING_KEY"
"""An environment variable holding the private key (PEM) itself, for secrets passed that way."""

ALGORITHM = "ed25519"


class SigningKeyError(ValueError):
    """A key file that is missing, unreadable or not an Ed25519 key (the message says which)."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: which key signed, without carrying the key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _message(schema: str, value: str) -> bytes:
    return f"{schema}\n{value}".encode()


class Signer:
    """Signs with one private key; what a writer holds."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    def sign(self, schema: str, value: str) -> dict[str, str]:
        signature = self._key.sign(_message(schema, value))
        return {"alg": ALGORITHM, "key_id": self.key_id, "value": base64.b64encode(signature).decode()}


def check_signature(public_key: Ed25519PublicKey, schema: str, value: str, signature: Any) -> str | None:
    """None when ``signature`` (as ``Signer.sign`` made it) signs ``value`` with this key, else what is wrong."""
    if not isinstance(signature, Mapping):
        return "it is not signed"
    if signature.get("alg") != ALGORITHM:
        return f"unknown signature algorithm {signature.get('alg')!r}"
    if signature.get("key_id") != key_id(public_key):
        return f"signed with another key ({signature.get('key_id')!r}, not {key_id(public_key)!r})"
    try:
        public_key.verify(base64.b64decode(str(signature.get("value")), validate=True), _message(schema, value))
    except (InvalidSignature, ValueError):
        return "the signature does not match"
    return None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def load_signer(path: Path | None, environ: Mapping[str, str] = os.environ) -> Signer | None:
    """The signer from the PEM in ``$AIMSGUARD_EVENT_LOG_SIGNING_KEY``, else from the file
    ``path``; None when neither is given (digests are then unsigned)."""
    if environ.get(SIGNING_KEY_ENV):
        pem, origin = environ[SIGNING_KEY_ENV].encode(), f"${SIGNING_KEY_ENV}"
    elif path is not None:
        pem, origin = _read(path, "event log signing key"), str(path)
    else:
        return None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{origin} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{origin} is a {type(key).__name__}, not an Ed25519 private key")
    return Signer(key)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_read(path, "public key"))
    except ValueError as exc:
        raise SigningKeyError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is a {type(key).__name__}, not an Ed25519 public key")
    return key


def generate_key_pair(private_path: Path) -> Path:
    """Write a new private key (mode 0600) to ``private_path`` and its public key beside it
    (``<name>.pub``); returns the public key's path. Refuses to overwrite either."""
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise SigningKeyError(f"{path} already exists (not overwritten)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return public_path
