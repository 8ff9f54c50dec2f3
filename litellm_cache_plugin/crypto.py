"""Encryption at rest for cached payloads (AES-256-GCM, from the ``cryptography`` package).

Keys are 32 random bytes, given in standard base64 in ``encryption.keys`` (or the env override
``LITELLM_CACHE_PLUGIN__ENCRYPTION__KEYS='["..."]'``). The first key encrypts; every listed key can
decrypt. Each entry records the id of its key (a hash prefix, never the key). Rotation: put the new
key first and keep the old one until its entries expired — or drop it at once, and entries written
under it become misses (never errors). The associated data binds a ciphertext to its cache key and
tenant, so an encrypted entry copied under another key does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

NONCE_BYTES = 12


class CipherConfigError(ValueError):
    """A key that cannot be used; the message never contains the key."""


def _decode_key(text: str, index: int) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CipherConfigError(f"encryption.keys[{index}] is not base64") from None
    if len(raw) != 32:
        raise CipherConfigError(f"encryption.keys[{index}] must decode to 32 bytes (got {len(raw)})")
    return raw


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"lcp-key-id" + key).hexdigest()[:12]


class PayloadCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise CipherConfigError("encryption.keys is empty")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:  # pragma: no cover - cryptography comes with litellm[proxy]
            raise CipherConfigError(
                "encryption needs the 'cryptography' package: pip install 'litellm-cache-plugin[encryption]'"
            ) from None
        decoded = [_decode_key(text, i) for i, text in enumerate(keys)]
        self._ciphers = {key_id(key): AESGCM(key) for key in decoded}
        self.current_id = key_id(decoded[0])
        self.decrypt_failures = 0

    def encrypt(self, payload: bytes, associated: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        return self.current_id, nonce + self._ciphers[self.current_id].encrypt(nonce, payload, associated)

    def decrypt(self, kid: str, blob: bytes, associated: bytes) -> bytes | None:
        """The plaintext, or None for an unknown (rotated-out) key or a tampered entry."""
        cipher = self._ciphers.get(kid)
        if cipher is None or len(blob) <= NONCE_BYTES:
            self.decrypt_failures += 1
            return None
        try:
            return bytes(cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated))
        except Exception:  # InvalidTag: tampered, or bound to another key/tenant
            self.decrypt_failures += 1
            return None


def generate_key() -> str:
    """A new base64 key for ``encryption.keys``."""
    return base64.b64encode(os.urandom(32)).decode()
