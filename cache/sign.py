"""Ed25519 keys and entry signatures (the ``cryptography`` package).

A signature covers ``Entry.content_hash`` with a domain prefix, so a signature
made for an entry cannot be replayed as a signature over anything else. Per-size
records (``cache/sizes.py``) are signed the same way, over their own content hash,
which hashes a prefix of its own: no entry hash equals a size record's, so a
signature made for one is never valid for the other. Keys are
PEM files: ``NAME.key`` (PKCS#8, private, mode 0600) and ``NAME.pub``
(SubjectPublicKeyInfo), readable by ``openssl pkey``. A signer is named in an entry
by the fingerprint of its public key: the first 32 hex digits of sha256(raw key).

When no ``LLM_INDUCTOR_SIGNING_KEY`` is set, each cache directory gets its own key,
created on first use at ``<cache_dir>/keys/local.key``: "the local key" that
``cache add`` and ``cache verify`` sign with and that this cache always trusts.

Revocations are signed too, over their target and reason with another domain prefix
(``cache/trust.py`` decides which to honour). ``COMPROMISED`` lists keys whose private
half is known to have leaked: nothing signed by them is trusted, and this build
refuses to sign with them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from llm_inductor._errors import UsageError
from llm_inductor._files import atomic_write

log = logging.getLogger(__name__)

_DOMAIN = b"llm_inductor-entry-v1\0"
_REVOCATION_DOMAIN = b"llm_inductor-revocation-v1\0"
LOCAL_KEY_NAME = "local"

# fingerprint → how it leaked. Entries and revocations they signed are refused everywhere.
COMPROMISED = {
    "3cbddc137a2863883446fcb268173b1d": "its private key was committed in benchmarks/results/batch_flow_state.tgz",
}


class Signable(Protocol):
    """A dataclass signed over its content hash: ``Entry``, ``SizeRecord``."""

    signature: str | None
    signer: str | None

    @property
    def content_hash(self) -> str: ...


S = TypeVar("S", bound=Signable)


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise UsageError(
            "Signing and checking cache entries needs the 'cryptography' package: pip install 'llm-inductor[signing]'."
        ) from None
    return ed25519


def _serialization() -> Any:
    _crypto()  # the friendly error when the package is missing
    from cryptography.hazmat.primitives import serialization

    return serialization


def available() -> bool:
    """Whether signatures can be checked here (the GPU image may lack ``cryptography``)."""
    try:
        _crypto()
    except UsageError:
        return False
    return True


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class PublicKey:
    raw: bytes  # 32 bytes
    source: str  # where it was read from, for messages

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def verify(self, signature: bytes, content_hash: str) -> bool:
        return self._verify(signature, _DOMAIN + content_hash.encode())

    def verify_revocation(self, signature: bytes, target: str, reason: str) -> bool:
        return self._verify(signature, _revocation_message(target, reason))

    def _verify(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        key = _crypto().Ed25519PublicKey.from_public_bytes(self.raw)
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def pem(self) -> bytes:
        s = _serialization()
        key = _crypto().Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)


class SigningKey:
    def __init__(self, private: Any, source: str) -> None:
        self._private = private
        self.source = source
        s = _serialization()
        raw = private.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
        self.public = PublicKey(raw, source)

    def sign(self, item: S) -> S:
        """A copy of item (an ``Entry`` or a ``SizeRecord``: a dataclass with a content hash) signed with this key."""
        signature = self._private.sign(_DOMAIN + item.content_hash.encode())
        signed = {"signature": signature.hex(), "signer": self.public.fingerprint}
        return dataclasses.replace(item, **signed)  # type: ignore[type-var]

    def sign_revocation(self, target: str, reason: str) -> str:
        """The hex signature over a revocation's target and reason."""
        return self._private.sign(_revocation_message(target, reason)).hex()

    def private_pem(self) -> bytes:
        s = _serialization()
        return self._private.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())


# ---------------------------------------------------------------------------- files


def ephemeral(source: str) -> SigningKey:
    """A new key pair held only by the returned object: nothing is written (``cache release``)."""
    return SigningKey(_crypto().Ed25519PrivateKey.generate(), source)


def generate(directory: str | Path, name: str = "llm_inductor", force: bool = False) -> tuple[Path, Path]:
    """Write NAME.key (0600) and NAME.pub in directory; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    if not force and (key_path.exists() or pub_path.exists()):
        raise UsageError(f"{key_path} or {pub_path} already exists; pick another --name or pass --force.")
    key = ephemeral(str(key_path))
    _write_private(key_path, key.private_pem(), exclusive=not force)
    atomic_write(pub_path, key.public.pem())
    return key_path, pub_path


def load_private(path: str | Path) -> SigningKey:
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(
            f"Cannot read the signing key {path} ({e.strerror}); fix LLM_INDUCTOR_SIGNING_KEY "
            "or make a key pair with `llm-inductor cache keygen DIR`."
        ) from None
    try:
        private = _serialization().load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path} is not an unencrypted PEM private key ({e}).") from None
    if not isinstance(private, _crypto().Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key; make one with `llm-inductor cache keygen DIR`.")
    key = SigningKey(private, str(path))
    leaked = COMPROMISED.get(key.public.fingerprint)
    if leaked:
        raise UsageError(
            f"The signing key {path} ({key.public.fingerprint}) is compromised: {leaked}. Nothing it signs is "
            f"trusted. Delete it (a cache directory's local key is made afresh on next use) or point "
            f"LLM_INDUCTOR_SIGNING_KEY at a key from `llm-inductor cache keygen DIR`."
        )
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning(
            "llm_inductor: the signing key %s is readable by others (mode %o); run `chmod 600 %s`",
            path,
            stat.S_IMODE(mode),
            path,
        )
    return key


def load_public(path: str | Path) -> PublicKey:
    """A public key from a .pub PEM file, or from a private key file (its public half)."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"Cannot read the public key {path} ({e.strerror}); fix LLM_INDUCTOR_TRUSTED_KEYS.") from None
    if b"PRIVATE KEY" in data:
        return load_private(path).public
    try:
        key = _serialization().load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path} is not a PEM public key ({e}).") from None
    if not isinstance(key, _crypto().Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key; make one with `llm-inductor cache keygen DIR`.")
    s = _serialization()
    return PublicKey(key.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw), str(path))


def local_key(cache_path: str | Path) -> SigningKey:
    """This cache directory's own key, created on first use (safe when many processes race)."""
    directory = Path(cache_path) / "keys"
    key_path, pub_path = directory / f"{LOCAL_KEY_NAME}.key", directory / f"{LOCAL_KEY_NAME}.pub"
    if not key_path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        fresh = SigningKey(_crypto().Ed25519PrivateKey.generate(), str(key_path))
        _write_private(key_path, fresh.private_pem(), exclusive=True)  # the first process to link it wins
    key = load_private(key_path)
    if not pub_path.exists() or load_public(pub_path).raw != key.public.raw:
        atomic_write(pub_path, key.public.pem())
    return key


def _revocation_message(target: str, reason: str) -> bytes:
    return _REVOCATION_DOMAIN + json.dumps({"reason": reason, "target": target}, sort_keys=True).encode()


def local_public(cache_path: str | Path) -> PublicKey | None:
    pub_path = Path(cache_path) / "keys" / f"{LOCAL_KEY_NAME}.pub"
    return load_public(pub_path) if pub_path.exists() else None


def _write_private(path: Path, data: bytes, exclusive: bool) -> None:
    """Write a 0600 file completely before it appears under its name; with exclusive, never replace one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # atomic and refuses to replace: a racing process's key stays
            except FileExistsError:
                pass
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
