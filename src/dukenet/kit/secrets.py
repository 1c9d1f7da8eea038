"""Authenticated encryption of small secrets at rest (agents' API keys).

Fernet (``cryptography``): AES-128-CBC with an HMAC-SHA256 tag over version, timestamp, IV and
ciphertext, so a token that was tampered with or made under another key fails to decrypt
instead of yielding garbage. Several keys make a ``MultiFernet``: the first encrypts, all
decrypt, and :meth:`SecretBox.rotate` re-encrypts a token under the first key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from dukenet.config import Settings

SECRET_KEY_FILE = "secret_key"
"""Name of the generated key file under ``var_dir`` when ``DUKENET_SECRET_KEY`` is unset."""


class SecretError(Exception):
    """A secret could not be decrypted: wrong key, or the token was altered."""


class SecretBox:
    """Encrypts and decrypts short strings with one or more Fernet keys (urlsafe base64, 32 bytes).

    Raises:
        ValueError: no key, or a key that is not a Fernet key (the message names
            ``DUKENET_SECRET_KEY``).
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("DUKENET_SECRET_KEY: at least one Fernet key is needed")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except ValueError as exc:
                raise ValueError(
                    f"DUKENET_SECRET_KEY: key {position} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes; make one with "
                    "`python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`)"
                ) from exc
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """Return the box for ``settings.secret_key`` (comma-separated keys, newest first), or
        for a key generated once and kept in ``<var_dir>/secret_key`` (mode 0600) if unset.

        Several API processes and runners must share ``DUKENET_SECRET_KEY`` to read each
        other's secrets, as they share ``DUKENET_JWT_SECRET``.
        """
        if settings.secret_key.strip():
            return cls([k for k in settings.secret_key.split(",") if k.strip()])
        return cls([_persisted_key(settings.var_dir / SECRET_KEY_FILE)])

    def encrypt(self, plaintext: str) -> str:
        """Return the Fernet token (ASCII) of ``plaintext`` under the newest key."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Return the plaintext of a token made under any of the keys.

        Raises:
            SecretError: no key opens the token, or it was altered.
        """
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SecretError("the secret cannot be decrypted with the configured keys") from exc

    def rotate(self, token: str) -> str:
        """Return ``token`` re-encrypted under the newest key (for retiring an old key).

        Raises:
            SecretError: no key opens the token.
        """
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretError("the secret cannot be decrypted with the configured keys") from exc


def generate_key() -> str:
    """Return a new random Fernet key."""
    return Fernet.generate_key().decode()


def _persisted_key(path: Path) -> str:
    """Return the key stored at ``path``, creating it (0600, exclusively) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(key)
            return key
    return path.read_text().strip()
